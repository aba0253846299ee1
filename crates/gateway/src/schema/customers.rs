//! Customers: the customer 360 view and the commands on a customer file.

use async_graphql::{
    ComplexObject, Context, Enum, Error, ID, InputObject, MaybeUndefined, Object, Result, SimpleObject,
    connection::{Connection, Edge, OpaqueCursor},
};
use chrono::{DateTime, NaiveDate, Utc};
use kefu_domain::{
    Patch,
    customer::{
        AssignAccountManager, Classification as DomainClassification, ClassifyCustomer, Contacts as DomainContacts,
        CustomerCommand, KeyContact as DomainKeyContact, RecordConsent, RegisterCustomer, UpdateCustomerProfile,
    },
    values::{Address as DomainAddress, Email, Label, Name, PhoneNumber, Text},
    vocab,
};
use kefu_projections::customer360::{
    self, CustomerCursor, CustomerFilter as ReadFilter, CustomerOrder as ReadOrder, CustomerView, InteractionView,
};
use kefu_store::history::Cutoff;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    common::{self, CommandOptions, CommandOutcome, GlobalPosition, Staff, StaffInput},
    interactions::Interaction,
    vocab::*,
};
use crate::errors::{self, Validator};

// ---------------------------------------------------------------------------------------------
// Output types

/// A customer file: profile, classification, contacts, account manager, consents and the
/// history of contacts (the customer 360 view).
pub struct Customer(pub CustomerView, Option<Then>);

/// What `customer(asOf:)` reads the lists under it with.
struct Then {
    cutoff: Cutoff,
    /// Interactions as of the cutoff, read once for `interactions` and `contactsByChannel`.
    interactions: tokio::sync::OnceCell<Vec<InteractionView>>,
}

impl Customer {
    /// The customer as the read model has them now.
    pub fn now(view: CustomerView) -> Self {
        Customer(view, None)
    }

    /// The customer as folded at `cutoff`; the lists under it are read at the same point.
    fn then(view: CustomerView, cutoff: Cutoff) -> Self {
        Customer(view, Some(Then { cutoff, interactions: tokio::sync::OnceCell::new() }))
    }

    /// The point `customer(asOf:)` reads at, for the lists under it.
    fn as_of(&self) -> Option<Cutoff> {
        self.1.as_ref().map(|t| t.cutoff)
    }

    /// Interactions as of the cutoff, newest first (`None` when reading the present).
    async fn interactions_then(&self, ctx: &Context<'_>) -> Result<Option<&[InteractionView]>> {
        let Some(then) = &self.1 else { return Ok(None) };
        let all = then
            .interactions
            .get_or_try_init(|| {
                kefu_projections::as_of::interactions_of_customer(
                    &common::state(ctx).pool,
                    self.0.customer_id,
                    then.cutoff,
                )
            })
            .await
            .map_err(errors::projection)?;
        Ok(Some(all))
    }
}

/// The first `first` items and whether more follow.
fn page<T>(items: impl Iterator<Item = T>, first: i64) -> (Vec<T>, bool) {
    let mut page: Vec<T> = items.take(first as usize + 1).collect();
    let more = page.len() as i64 > first;
    page.truncate(first as usize);
    (page, more)
}

/// A postal address.
#[derive(SimpleObject, Clone)]
pub struct Address {
    /// Street, building, room.
    pub street: Option<String>,
    /// City or district.
    pub city: Option<String>,
    /// Province, state or region.
    pub region: Option<String>,
    /// Postal code.
    pub postal_code: Option<String>,
    /// ISO 3166-1 alpha-2 country code.
    pub country: Option<String>,
}

impl From<&DomainAddress> for Address {
    fn from(a: &DomainAddress) -> Self {
        Address {
            street: a.street.clone(),
            city: a.city.clone(),
            region: a.region.clone(),
            postal_code: a.postal_code.clone(),
            country: a.country.clone(),
        }
    }
}

/// How to reach a customer.
#[derive(SimpleObject, Clone)]
pub struct Contacts {
    /// Main phone (normalised: optional `+` and digits).
    pub phone: Option<String>,
    /// Backup phone (备用电话).
    pub backup_phone: Option<String>,
    /// E-mail.
    pub email: Option<String>,
    /// Postal address.
    pub address: Option<Address>,
}

/// A key contact at a business customer (关键联系人).
#[derive(SimpleObject, Clone)]
pub struct KeyContact {
    /// Name.
    pub name: String,
    /// Role.
    pub role: Option<String>,
    /// Phone.
    pub phone: Option<String>,
    /// E-mail.
    pub email: Option<String>,
}

/// The customer's classification (客户分类).
#[derive(SimpleObject, Clone)]
pub struct Classification {
    /// 行业.
    pub industry: Option<Industry>,
    /// 规模.
    pub scale: Option<Scale>,
    /// 新/老/忠诚.
    pub tenure: Option<Tenure>,
    /// 重要/一般/潜在.
    pub value_tier: Option<ValueTier>,
    /// 潜在/优势/睡眠/逃跑.
    pub lifecycle_segment: Option<LifecycleSegment>,
    /// 大客户.
    pub key_account: bool,
    /// 级别.
    pub grade: Option<String>,
}

/// The customer's current answer on one use of their data.
#[derive(SimpleObject, Clone)]
pub struct Consent {
    /// The purpose.
    pub purpose: ConsentPurpose,
    /// Granted (true) or withdrawn/refused (false).
    pub granted: bool,
    /// When the customer said so (business time).
    pub at: Option<DateTime<Utc>>,
    /// Where.
    pub channel: Option<Channel>,
    /// Who recorded it.
    pub recorded_by: Option<String>,
}

/// Contacts through one channel.
#[derive(SimpleObject, Clone)]
pub struct ChannelCount {
    /// The channel.
    pub channel: Channel,
    /// Number of contacts.
    pub count: i32,
}

#[Object]
impl Customer {
    /// Global id (`Customer:<uuid>`), usable with `node`.
    pub async fn id(&self) -> ID {
        common::global_id("Customer", self.0.customer_id)
    }

    /// The customer's UUID (also the id in events on Kafka).
    async fn customer_id(&self) -> Uuid {
        self.0.customer_id
    }

    /// Person, organisation or internal department.
    async fn kind(&self) -> CustomerKind {
        self.0.profile.kind.into()
    }

    /// Name.
    async fn name(&self) -> &str {
        self.0.profile.name.as_str()
    }

    /// Gender (persons).
    async fn gender(&self) -> Option<Gender> {
        self.0.profile.gender.map(Into::into)
    }

    /// Birth date (persons).
    async fn birth_date(&self) -> Option<NaiveDate> {
        self.0.profile.birth_date
    }

    /// Phones, e-mail, address.
    async fn contacts(&self) -> Contacts {
        let c = &self.0.profile.contacts;
        Contacts {
            phone: c.phone.as_ref().map(|p| p.as_str().to_string()),
            backup_phone: c.backup_phone.as_ref().map(|p| p.as_str().to_string()),
            email: c.email.as_ref().map(|e| e.as_str().to_string()),
            address: c.address.as_ref().map(Address::from),
        }
    }

    /// Key contacts (organisations and departments).
    async fn key_contacts(&self) -> Vec<KeyContact> {
        self.0
            .profile
            .key_contacts
            .iter()
            .map(|k| KeyContact {
                name: k.name.as_str().to_string(),
                role: k.role.as_ref().map(|r| r.as_str().to_string()),
                phone: k.phone.as_ref().map(|p| p.as_str().to_string()),
                email: k.email.as_ref().map(|e| e.as_str().to_string()),
            })
            .collect()
    }

    /// Department code (internal departments).
    async fn department_code(&self) -> Option<&str> {
        self.0.profile.department_code.as_ref().map(|c| c.as_str())
    }

    /// 需求: what the customer needs.
    async fn needs(&self) -> Option<&str> {
        self.0.profile.needs.as_ref().map(|t| t.as_str())
    }

    /// 偏好: how the customer likes to be served.
    async fn preferences(&self) -> Option<&str> {
        self.0.profile.preferences.as_ref().map(|t| t.as_str())
    }

    /// The customer's id in another system.
    async fn external_ref(&self) -> Option<&str> {
        self.0.profile.external_ref.as_ref().map(|t| t.as_str())
    }

    /// Classification.
    async fn classification(&self) -> Classification {
        let v = &self.0;
        Classification {
            industry: v.industry.as_deref().and_then(from_short::<vocab::Industry, _>),
            scale: v.scale.as_deref().and_then(from_short::<vocab::Scale, _>),
            tenure: v.tenure.as_deref().and_then(from_short::<vocab::Tenure, _>),
            value_tier: v.value_tier.as_deref().and_then(from_short::<vocab::ValueTier, _>),
            lifecycle_segment: v.lifecycle_segment.as_deref().and_then(from_short::<vocab::LifecycleSegment, _>),
            key_account: v.key_account,
            grade: v.grade.clone(),
        }
    }

    /// The dedicated account manager (客户经理), if any.
    async fn account_manager(&self) -> Option<Staff> {
        self.0.account_manager_id.as_ref().map(|id| Staff { id: id.clone(), name: self.0.account_manager_name.clone() })
    }

    /// Consent per purpose, for every purpose the customer has answered.
    async fn consents(&self) -> Vec<Consent> {
        let Some(map) = self.0.consents.as_object() else {
            return vec![];
        };
        let mut out: Vec<Consent> = map
            .iter()
            .filter_map(|(purpose, v)| {
                Some(Consent {
                    purpose: from_short::<vocab::ConsentPurpose, _>(purpose)?,
                    granted: v.get("granted")?.as_bool()?,
                    at: v.get("at").and_then(|t| serde_json::from_value(t.clone()).ok()),
                    channel: v.get("channel").and_then(|c| c.as_str()).and_then(from_short::<vocab::Channel, _>),
                    recorded_by: v.get("recordedBy").and_then(|r| r.as_str()).map(str::to_string),
                })
            })
            .collect();
        out.sort_by_key(|c| c.purpose as u8);
        out
    }

    /// When the file was opened (business time).
    async fn registered_at(&self) -> DateTime<Utc> {
        self.0.registered_at
    }

    /// When the file last changed (business time).
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }

    /// Version of the customer record; pass it as `expectedVersion` to change it safely.
    async fn version(&self) -> i64 {
        self.0.version
    }

    /// The latest global position this view reflects for the customer.
    async fn last_position(&self) -> GlobalPosition {
        GlobalPosition(self.0.last_position)
    }

    /// Number of contacts recorded.
    async fn interaction_count(&self) -> i32 {
        self.0.interaction_count
    }

    /// Contacts settled at first contact (without transfer).
    async fn resolved_at_first_contact(&self) -> i32 {
        self.0.resolved_first_contact
    }

    /// Share of contacts settled at first contact (0..1); null without contacts.
    async fn first_contact_resolution_rate(&self) -> Option<f64> {
        self.0.first_contact_resolution()
    }

    /// Latest contact (business time).
    async fn last_contact_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_contact_at
    }

    /// Channel of the latest contact.
    async fn last_contact_channel(&self) -> Option<Channel> {
        self.0.last_contact_channel.as_deref().and_then(from_short::<vocab::Channel, _>)
    }

    /// Contacts per channel, most used first.
    async fn contacts_by_channel(&self, ctx: &Context<'_>) -> Result<Vec<ChannelCount>> {
        let counts = match self.interactions_then(ctx).await? {
            Some(all) => {
                let mut by_channel: std::collections::BTreeMap<&str, i32> = std::collections::BTreeMap::new();
                for i in all {
                    *by_channel.entry(&i.channel).or_default() += 1;
                }
                let mut counts: Vec<(String, i32)> = by_channel.into_iter().map(|(c, n)| (c.to_string(), n)).collect();
                // Most used first, then by channel (the sort is stable).
                counts.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
                counts
            }
            None => super::loaders::channel_counts(ctx, self.0.customer_id).await?,
        };
        Ok(counts
            .into_iter()
            .filter_map(|(channel, count)| {
                Some(ChannelCount { channel: from_short::<vocab::Channel, _>(&channel)?, count })
            })
            .collect())
    }

    /// The customer's service requests and complaints, newest first, with their SLA state and
    /// return-visit outcomes.
    async fn service_requests(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = true, desc = "Include closed, withdrawn and merged requests.")] include_closed: bool,
        #[graphql(default = 20, desc = "Page size, 1 to 100.")] first: i32,
        #[graphql(desc = "Cursor of the last edge of the previous page.")] after: Option<String>,
    ) -> Result<
        Connection<OpaqueCursor<kefu_projections::service_requests::BacklogCursor>, super::requests::ServiceRequest>,
    > {
        let first = page_size(first)?;
        let after: Option<kefu_projections::service_requests::BacklogCursor> = decode_cursor(after.as_deref())?;
        let aggregates = super::requests::aggregates_for(ctx.look_ahead().field("edges").field("node"));
        let (items, more) = match self.as_of() {
            Some(cutoff) => {
                let all =
                    kefu_projections::as_of::requests_of_customer(&common::state(ctx).pool, self.0.customer_id, cutoff)
                        .await
                        .map_err(errors::projection)?;
                let items = all
                    .into_iter()
                    .filter_map(kefu_projections::service_requests::StoredRequest::folded)
                    .filter(|r| include_closed || r.listed.live)
                    .map(|r| {
                        let cursor = kefu_projections::service_requests::BacklogCursor {
                            rank: None,
                            at: r.listed.filed_at,
                            id: r.listed.request_id,
                        };
                        (r, cursor)
                    })
                    .filter(|(_, c)| after.as_ref().is_none_or(|a| (c.at, c.id) < (a.at, a.id)));
                page(items, first)
            }
            None if after.is_none() => {
                super::loaders::requests_of_customer(ctx, self.0.customer_id, include_closed, first, aggregates).await?
            }
            None => {
                super::requests::of_customer(ctx, self.0.customer_id, include_closed, first, after, aggregates).await?
            }
        };
        let mut connection = Connection::new(false, more);
        for (view, cursor) in items {
            let request = match self.as_of() {
                Some(cutoff) => super::requests::ServiceRequest::as_of(view, cutoff),
                None => super::requests::ServiceRequest::new(view),
            };
            connection.edges.push(Edge::new(OpaqueCursor(cursor), request));
        }
        Ok(connection)
    }

    /// The customer's satisfaction over time: every answered survey, oldest first, with its
    /// overall score, mean score, NPS class, effort and composite index.
    async fn satisfaction(&self, ctx: &Context<'_>) -> Result<Vec<super::satisfaction::SatisfactionPoint>> {
        if self.as_of().is_some() {
            return Err(super::history::present_only("customer", "satisfaction"));
        }
        super::satisfaction::trajectory(ctx, self.0.customer_id).await
    }

    /// Surveys sent to the customer, newest first.
    async fn surveys(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20, desc = "At most this many, 1 to 100.")] first: i32,
    ) -> Result<Vec<super::satisfaction::Survey>> {
        if self.as_of().is_some() {
            return Err(super::history::present_only("customer", "surveys"));
        }
        let first = page_size(first)?;
        super::satisfaction::of_customer(ctx, self.0.customer_id, first).await
    }

    /// The interaction timeline, newest first.
    async fn interactions(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20, desc = "Page size, 1 to 100.")] first: i32,
        #[graphql(desc = "Cursor of the last edge of the previous page.")] after: Option<String>,
    ) -> Result<Connection<OpaqueCursor<TimelineCursor>, Interaction>> {
        let first = page_size(first)?;
        let after = decode_cursor::<TimelineCursor>(after.as_deref())?;
        let (items, more) = match self.interactions_then(ctx).await? {
            Some(all) => {
                let items = all
                    .iter()
                    .filter(|i| after.as_ref().is_none_or(|a| (i.occurred_at, i.interaction_id) < (a.at, a.id)))
                    .cloned();
                page(items, first)
            }
            None if after.is_none() => super::loaders::timeline(ctx, self.0.customer_id, first).await?,
            None => {
                let mut tx = read(ctx).await?;
                customer360::timeline(&mut tx, self.0.customer_id, first, after.map(|c| (c.at, c.id)))
                    .await
                    .map_err(errors::projection)?
            }
        };
        let mut connection = Connection::new(false, more);
        for i in items {
            let cursor = OpaqueCursor(TimelineCursor { at: i.occurred_at, id: i.interaction_id });
            connection.edges.push(Edge::new(cursor, Interaction(i)));
        }
        Ok(connection)
    }
}

/// Position in a timeline.
#[derive(Serialize, Deserialize, Clone)]
pub struct TimelineCursor {
    at: DateTime<Utc>,
    id: Uuid,
}

/// Position in a customer list.
#[derive(Serialize, Deserialize, Clone)]
pub enum ListCursor {
    /// By name.
    N(String, Uuid),
    /// By registration.
    R(DateTime<Utc>, Uuid),
}

pub(crate) fn page_size(first: i32) -> Result<i64> {
    if !(1..=100).contains(&first) {
        return Err(errors::invalid("first", "must be between 1 and 100"));
    }
    Ok(i64::from(first))
}

pub(crate) fn decode_cursor<T: Serialize + serde::de::DeserializeOwned>(after: Option<&str>) -> Result<Option<T>> {
    use async_graphql::connection::CursorType;
    match after {
        None => Ok(None),
        Some(s) => OpaqueCursor::<T>::decode_cursor(s)
            .map(|c| Some(c.0))
            .map_err(|_| errors::invalid("after", "not a cursor returned by this list")),
    }
}

pub(crate) async fn read<'a>(ctx: &'a Context<'_>) -> Result<common::ReadConnection<'a>> {
    common::read(ctx, customer360::NAME).await
}

/// A customer folded from the event store as of a point.
pub async fn load_as_of(ctx: &Context<'_>, id: Uuid, cutoff: Cutoff) -> Result<Option<Customer>> {
    let folded =
        kefu_projections::as_of::customer(&common::state(ctx).pool, id, cutoff).await.map_err(errors::projection)?;
    Ok(folded.view.map(|v| Customer::then(v, cutoff)))
}

/// Loads a customer from the read model.
pub async fn load(ctx: &Context<'_>, id: Uuid) -> Result<Option<Customer>> {
    Ok(super::loaders::customer(ctx, id).await?.map(Customer::now))
}

// ---------------------------------------------------------------------------------------------
// Queries

/// Filters for `customers`; every given field must match.
#[derive(InputObject, Default)]
pub struct CustomerFilter {
    /// Part of the name, phone number or e-mail (case-insensitive).
    pub search: Option<String>,
    /// Kind.
    pub kind: Option<CustomerKind>,
    /// Value tier.
    pub value_tier: Option<ValueTier>,
    /// Lifecycle segment.
    pub lifecycle_segment: Option<LifecycleSegment>,
    /// Industry.
    pub industry: Option<Industry>,
    /// Key accounts only (true) or none (false).
    pub key_account: Option<bool>,
    /// Customers of this account manager.
    pub account_manager_id: Option<String>,
}

/// Order of `customers`.
#[derive(Enum, Clone, Copy, PartialEq, Eq, Default)]
pub enum CustomerOrder {
    /// By name, A→Z.
    #[default]
    Name,
    /// Most recently registered first.
    NewestFirst,
}

/// Customer queries.
#[derive(Default)]
pub struct CustomerQuery;

#[Object]
impl CustomerQuery {
    /// One customer's 360 view. `null` when no such customer exists.
    async fn customer(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "`Customer:<uuid>` or the bare UUID.")] id: ID,
        #[graphql(desc = "Wait (bounded) until the view reflects this position, e.g. a mutation's `globalPosition`.")]
        min_position: Option<GlobalPosition>,
        #[graphql(desc = "The customer as they were at this point, folded from their events in the event store \
                          (its lists too, except surveys and satisfaction).")]
        as_of: Option<super::history::AsOf>,
    ) -> Result<Option<Customer>> {
        common::actor(ctx)?;
        let id = common::parse_id("Customer", "id", &id).map_err(|e| errors::domain(e, ""))?;
        if let Some(as_of) = as_of {
            return load_as_of(ctx, id, as_of.cutoff("asOf")?).await;
        }
        common::wait_for(ctx, customer360::NAME, min_position).await?;
        load(ctx, id).await
    }

    /// Customers, filtered and sorted, as a Relay connection.
    async fn customers(
        &self,
        ctx: &Context<'_>,
        filter: Option<CustomerFilter>,
        #[graphql(default)] order_by: CustomerOrder,
        #[graphql(default = 20, desc = "Page size, 1 to 100.")] first: i32,
        #[graphql(desc = "Cursor of the last edge of the previous page.")] after: Option<String>,
        #[graphql(desc = "Wait (bounded) until the list reflects this position.")] min_position: Option<GlobalPosition>,
    ) -> Result<Connection<OpaqueCursor<ListCursor>, Customer>> {
        common::actor(ctx)?;
        let first = page_size(first)?;
        let after = decode_cursor::<ListCursor>(after.as_deref())?;
        common::wait_for(ctx, customer360::NAME, min_position).await?;
        let f = filter.unwrap_or_default();
        let read_filter = ReadFilter {
            search: f.search.filter(|s| !s.trim().is_empty()).map(|s| s.trim().to_string()),
            kind: f.kind.map(|k| vocab::CustomerKind::from(k).as_str().to_string()),
            value_tier: f.value_tier.map(|v| vocab::ValueTier::from(v).as_str().to_string()),
            lifecycle_segment: f.lifecycle_segment.map(|v| vocab::LifecycleSegment::from(v).as_str().to_string()),
            industry: f.industry.map(|v| vocab::Industry::from(v).as_str().to_string()),
            key_account: f.key_account,
            account_manager_id: f.account_manager_id,
        };
        let (order, cursor) = match order_by {
            CustomerOrder::Name => (
                ReadOrder::Name,
                match after {
                    Some(ListCursor::N(n, id)) => Some(CustomerCursor::Name(n, id)),
                    Some(_) => {
                        return Err(errors::invalid("after", "cursor belongs to another order"));
                    }
                    None => None,
                },
            ),
            CustomerOrder::NewestFirst => (
                ReadOrder::NewestFirst,
                match after {
                    Some(ListCursor::R(t, id)) => Some(CustomerCursor::Registered(t, id)),
                    Some(_) => {
                        return Err(errors::invalid("after", "cursor belongs to another order"));
                    }
                    None => None,
                },
            ),
        };
        let mut tx = read(ctx).await?;
        let (items, more) = customer360::list_customers(&mut tx, &read_filter, order, first, cursor.as_ref())
            .await
            .map_err(errors::projection)?;
        let mut connection = Connection::new(false, more);
        for c in items {
            let cursor = match order {
                ReadOrder::Name => ListCursor::N(c.profile.name.as_str().to_lowercase(), c.customer_id),
                ReadOrder::NewestFirst => ListCursor::R(c.registered_at, c.customer_id),
            };
            connection.edges.push(Edge::new(OpaqueCursor(cursor), Customer::now(c)));
        }
        Ok(connection)
    }
}

// ---------------------------------------------------------------------------------------------
// Inputs

/// A postal address; at least one part.
#[derive(InputObject, Clone, Default)]
pub struct AddressInput {
    /// Street, building, room.
    pub street: Option<String>,
    /// City or district.
    pub city: Option<String>,
    /// Province, state or region.
    pub region: Option<String>,
    /// Postal code.
    pub postal_code: Option<String>,
    /// ISO 3166-1 alpha-2 country code, e.g. `CN`.
    pub country: Option<String>,
}

impl AddressInput {
    fn parse(&self, field: &str) -> Result<DomainAddress, kefu_domain::DomainError> {
        DomainAddress::parse(
            field,
            self.street.as_deref(),
            self.city.as_deref(),
            self.region.as_deref(),
            self.postal_code.as_deref(),
            self.country.as_deref(),
        )
    }
}

/// Phones, e-mail and address.
#[derive(InputObject, Clone, Default)]
pub struct ContactsInput {
    /// Main phone, e.g. `138 0013 8000` or `+86 10 6552 9988`.
    pub phone: Option<String>,
    /// Backup phone (备用电话); must differ from the main phone.
    pub backup_phone: Option<String>,
    /// E-mail.
    pub email: Option<String>,
    /// Postal address.
    pub address: Option<AddressInput>,
}

/// A key contact.
#[derive(InputObject, Clone)]
pub struct KeyContactInput {
    /// Name.
    pub name: String,
    /// Role, e.g. 采购经理.
    pub role: Option<String>,
    /// Phone.
    pub phone: Option<String>,
    /// E-mail.
    pub email: Option<String>,
}

fn opt<T>(
    v: &mut Validator,
    prefix: &str,
    raw: &Option<String>,
    parse: impl Fn(&str) -> Result<T, kefu_domain::DomainError>,
) -> Option<Option<T>> {
    match raw {
        None => Some(None),
        Some(s) => v.check(prefix, parse(s)).map(Some),
    }
}

fn key_contacts(v: &mut Validator, prefix: &str, list: &[KeyContactInput]) -> Option<Vec<DomainKeyContact>> {
    let mut out = Vec::with_capacity(list.len());
    let mut ok = true;
    for (i, k) in list.iter().enumerate() {
        let p = format!("{prefix}.keyContacts[{i}]");
        let name = v.check(&p, Name::parse("name", &k.name));
        let role = opt(v, &p, &k.role, |s| Label::parse("role", s));
        let phone = opt(v, &p, &k.phone, |s| PhoneNumber::parse("phone", s));
        let email = opt(v, &p, &k.email, |s| Email::parse("email", s));
        match (name, role, phone, email) {
            (Some(name), Some(role), Some(phone), Some(email)) => {
                out.push(DomainKeyContact { name, role, phone, email })
            }
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

/// Customer classification as input; every part optional.
#[derive(InputObject, Clone, Default)]
pub struct ClassificationInput {
    /// 行业.
    pub industry: Option<Industry>,
    /// 规模.
    pub scale: Option<Scale>,
    /// 新/老/忠诚.
    pub tenure: Option<Tenure>,
    /// 重要/一般/潜在.
    pub value_tier: Option<ValueTier>,
    /// 潜在/优势/睡眠/逃跑.
    pub lifecycle_segment: Option<LifecycleSegment>,
    /// 大客户.
    #[graphql(default)]
    pub key_account: bool,
    /// 级别.
    pub grade: Option<String>,
}

/// Open a customer file.
#[derive(InputObject)]
pub struct RegisterCustomerInput {
    /// The new customer's id; when absent kefu derives one from `commandId` (so a retry
    /// creates the same customer) or makes a new one.
    pub customer_id: Option<Uuid>,
    /// Person, organisation or internal department.
    pub kind: CustomerKind,
    /// Name.
    pub name: String,
    /// Gender (persons only).
    pub gender: Option<Gender>,
    /// Birth date (persons only).
    pub birth_date: Option<NaiveDate>,
    /// Phones, e-mail, address.
    #[graphql(default)]
    pub contacts: ContactsInput,
    /// Key contacts (organisations and departments only).
    #[graphql(default)]
    pub key_contacts: Vec<KeyContactInput>,
    /// Department code (required for, and only for, internal departments).
    pub department_code: Option<String>,
    /// 需求.
    pub needs: Option<String>,
    /// 偏好.
    pub preferences: Option<String>,
    /// The customer's id in another system.
    pub external_ref: Option<String>,
    /// Initial classification.
    pub classification: Option<ClassificationInput>,
    /// Initial account manager.
    pub account_manager: Option<StaffInput>,
    /// Retry and concurrency controls.
    #[graphql(flatten)]
    pub options: CommandOptions,
}

/// Change profile fields. Leave a field out to keep it; set it to `null` to remove it.
#[derive(InputObject)]
pub struct UpdateCustomerProfileInput {
    /// Which customer.
    pub customer_id: ID,
    /// New name (cannot be removed).
    pub name: Option<String>,
    /// Gender (persons).
    pub gender: MaybeUndefined<Gender>,
    /// Birth date (persons).
    pub birth_date: MaybeUndefined<NaiveDate>,
    /// Main phone.
    pub phone: MaybeUndefined<String>,
    /// Backup phone.
    pub backup_phone: MaybeUndefined<String>,
    /// E-mail.
    pub email: MaybeUndefined<String>,
    /// Address (replaces the whole address).
    pub address: MaybeUndefined<AddressInput>,
    /// Key contacts (replaces the whole list; `[]` or `null` removes them).
    pub key_contacts: MaybeUndefined<Vec<KeyContactInput>>,
    /// 需求.
    pub needs: MaybeUndefined<String>,
    /// 偏好.
    pub preferences: MaybeUndefined<String>,
    /// Id in another system.
    pub external_ref: MaybeUndefined<String>,
    /// Retry and concurrency controls.
    #[graphql(flatten)]
    pub options: CommandOptions,
}

/// Set parts of the classification. Leave a part out to keep it; `null` removes it.
#[derive(InputObject)]
pub struct ClassifyCustomerInput {
    /// Which customer.
    pub customer_id: ID,
    /// 行业.
    pub industry: MaybeUndefined<Industry>,
    /// 规模.
    pub scale: MaybeUndefined<Scale>,
    /// 新/老/忠诚.
    pub tenure: MaybeUndefined<Tenure>,
    /// 重要/一般/潜在.
    pub value_tier: MaybeUndefined<ValueTier>,
    /// 潜在/优势/睡眠/逃跑.
    pub lifecycle_segment: MaybeUndefined<LifecycleSegment>,
    /// 大客户.
    pub key_account: Option<bool>,
    /// 级别.
    pub grade: MaybeUndefined<String>,
    /// Retry and concurrency controls.
    #[graphql(flatten)]
    pub options: CommandOptions,
}

/// Make a member of staff the customer's account manager.
#[derive(InputObject)]
pub struct AssignAccountManagerInput {
    /// Which customer.
    pub customer_id: ID,
    /// The manager.
    pub manager: StaffInput,
    /// Why.
    pub reason: Option<String>,
    /// Retry and concurrency controls.
    #[graphql(flatten)]
    pub options: CommandOptions,
}

/// Record the customer's consent to (or refusal of) a use of their data.
#[derive(InputObject)]
pub struct RecordConsentInput {
    /// Which customer.
    pub customer_id: ID,
    /// For what.
    pub purpose: ConsentPurpose,
    /// Granted (true) or withdrawn/refused (false).
    pub granted: bool,
    /// Where the customer said so.
    pub channel: Option<Channel>,
    /// Note, e.g. a form or recording reference.
    pub note: Option<String>,
    /// Retry and concurrency controls.
    #[graphql(flatten)]
    pub options: CommandOptions,
}

fn patch<I, T>(
    v: &mut Validator,
    prefix: &str,
    raw: &MaybeUndefined<I>,
    parse: impl Fn(&I) -> Result<T, kefu_domain::DomainError>,
) -> Option<Patch<T>> {
    match raw {
        MaybeUndefined::Undefined => Some(Patch::Keep),
        MaybeUndefined::Null => Some(Patch::Clear),
        MaybeUndefined::Value(x) => v.check(prefix, parse(x)).map(Patch::Set),
    }
}

fn enum_patch<G: Copy, D: From<G>>(raw: &MaybeUndefined<G>) -> Patch<D> {
    match raw {
        MaybeUndefined::Undefined => Patch::Keep,
        MaybeUndefined::Null => Patch::Clear,
        MaybeUndefined::Value(g) => Patch::Set(D::from(*g)),
    }
}

fn customer_id(raw: &ID) -> Result<Uuid> {
    common::parse_id("Customer", "input.customerId", raw).map_err(|e| errors::domain(e, ""))
}

fn past_date(v: &mut Validator, field: &str, date: Option<NaiveDate>) {
    if let Some(d) = date
        && d > Utc::now().date_naive()
    {
        v.fail(field, "a birth date cannot be in the future");
    }
}

impl RegisterCustomerInput {
    fn to_command(&self, id: Uuid) -> Result<RegisterCustomer> {
        let p = "input";
        let mut v = Validator::default();
        let name = v.check(p, Name::parse("name", &self.name));
        past_date(&mut v, "input.birthDate", self.birth_date);
        let c = &self.contacts;
        let cp = "input.contacts";
        let phone = opt(&mut v, cp, &c.phone, |s| PhoneNumber::parse("phone", s));
        let backup = opt(&mut v, cp, &c.backup_phone, |s| PhoneNumber::parse("backupPhone", s));
        let email = opt(&mut v, cp, &c.email, |s| Email::parse("email", s));
        let address = match &c.address {
            None => Some(None),
            Some(a) => v.check(cp, a.parse("address")).map(Some),
        };
        let keys = key_contacts(&mut v, p, &self.key_contacts);
        let department = opt(&mut v, p, &self.department_code, |s| Label::parse("departmentCode", s));
        let needs = opt(&mut v, p, &self.needs, |s| Text::parse("needs", s));
        let preferences = opt(&mut v, p, &self.preferences, |s| Text::parse("preferences", s));
        let external = opt(&mut v, p, &self.external_ref, |s| Label::parse("externalRef", s));
        let classification = match &self.classification {
            None => Some(None),
            Some(c) => opt(&mut v, "input.classification", &c.grade, |s| Label::parse("grade", s)).map(|grade| {
                Some(DomainClassification {
                    industry: c.industry.map(Into::into),
                    scale: c.scale.map(Into::into),
                    tenure: c.tenure.map(Into::into),
                    value_tier: c.value_tier.map(Into::into),
                    lifecycle_segment: c.lifecycle_segment.map(Into::into),
                    key_account: c.key_account,
                    grade,
                })
            }),
        };
        let manager = match &self.account_manager {
            None => Some(None),
            Some(m) => m.parse("input.accountManager", &mut v).map(Some),
        };
        v.finish()?;
        let missing = || errors::internal("validated input lost a value");
        Ok(RegisterCustomer {
            customer_id: id,
            kind: self.kind.into(),
            name: name.ok_or_else(missing)?,
            gender: self.gender.map(Into::into),
            birth_date: self.birth_date,
            contacts: DomainContacts {
                phone: phone.ok_or_else(missing)?,
                backup_phone: backup.ok_or_else(missing)?,
                email: email.ok_or_else(missing)?,
                address: address.ok_or_else(missing)?,
            },
            key_contacts: keys.ok_or_else(missing)?,
            department_code: department.ok_or_else(missing)?,
            needs: needs.ok_or_else(missing)?,
            preferences: preferences.ok_or_else(missing)?,
            external_ref: external.ok_or_else(missing)?,
            classification: classification.ok_or_else(missing)?,
            account_manager: manager.ok_or_else(missing)?,
        })
    }
}

impl UpdateCustomerProfileInput {
    fn to_command(&self) -> Result<UpdateCustomerProfile> {
        let id = customer_id(&self.customer_id)?;
        let p = "input";
        let mut v = Validator::default();
        let name = opt(&mut v, p, &self.name, |s| Name::parse("name", s));
        if let MaybeUndefined::Value(d) = &self.birth_date {
            past_date(&mut v, "input.birthDate", Some(*d));
        }
        let phone = patch(&mut v, p, &self.phone, |s| PhoneNumber::parse("phone", s));
        let backup = patch(&mut v, p, &self.backup_phone, |s| PhoneNumber::parse("backupPhone", s));
        let email = patch(&mut v, p, &self.email, |s| Email::parse("email", s));
        let address = patch(&mut v, p, &self.address, |a| a.parse("address"));
        let keys = match &self.key_contacts {
            MaybeUndefined::Undefined => Some(Patch::Keep),
            MaybeUndefined::Null => Some(Patch::Clear),
            MaybeUndefined::Value(list) => key_contacts(&mut v, p, list).map(Patch::Set),
        };
        let needs = patch(&mut v, p, &self.needs, |s| Text::parse("needs", s));
        let preferences = patch(&mut v, p, &self.preferences, |s| Text::parse("preferences", s));
        let external = patch(&mut v, p, &self.external_ref, |s| Label::parse("externalRef", s));
        v.finish()?;
        let missing = || errors::internal("validated input lost a value");
        Ok(UpdateCustomerProfile {
            customer_id: id,
            name: name.ok_or_else(missing)?,
            gender: enum_patch(&self.gender),
            birth_date: match &self.birth_date {
                MaybeUndefined::Undefined => Patch::Keep,
                MaybeUndefined::Null => Patch::Clear,
                MaybeUndefined::Value(d) => Patch::Set(*d),
            },
            phone: phone.ok_or_else(missing)?,
            backup_phone: backup.ok_or_else(missing)?,
            email: email.ok_or_else(missing)?,
            address: address.ok_or_else(missing)?,
            key_contacts: keys.ok_or_else(missing)?,
            needs: needs.ok_or_else(missing)?,
            preferences: preferences.ok_or_else(missing)?,
            external_ref: external.ok_or_else(missing)?,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Mutations

/// What a customer command did, and the customer afterwards.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct CustomerPayload {
    /// The command's outcome.
    #[graphql(flatten)]
    pub outcome: CommandOutcome,
    /// The customer.
    pub customer_id: Uuid,
}

#[ComplexObject]
impl CustomerPayload {
    /// The customer as the 360 view shows it once it reflects this command (waits, bounded).
    async fn customer(&self, ctx: &Context<'_>) -> Result<Option<Customer>> {
        common::wait_for(ctx, customer360::NAME, self.outcome.global_position).await?;
        load(ctx, self.customer_id).await
    }
}

async fn run(
    ctx: &Context<'_>,
    command: CustomerCommand,
    meta: kefu_app::CommandMeta,
) -> Result<CustomerPayload, Error> {
    let id = command.customer_id();
    let outcome =
        common::state(ctx).commands.customer(command, meta.clone()).await.map_err(|e| errors::app(e, "input"))?;
    let command_id = meta.command_id.unwrap_or_default();
    Ok(CustomerPayload { outcome: CommandOutcome::new(command_id, &outcome), customer_id: id })
}

/// Customer commands.
#[derive(Default)]
pub struct CustomerMutation;

#[Object]
impl CustomerMutation {
    /// Open a customer file (客户档案) for a person, an organisation or an internal department.
    async fn register_customer(&self, ctx: &Context<'_>, input: RegisterCustomerInput) -> Result<CustomerPayload> {
        let meta = common::meta(ctx, &input.options)?;
        let id = input.customer_id.unwrap_or_else(|| meta.new_entity_id("customer"));
        let command = input.to_command(id)?;
        run(ctx, CustomerCommand::Register(command), meta).await
    }

    /// Change profile fields; only what changes is recorded.
    async fn update_customer_profile(
        &self,
        ctx: &Context<'_>,
        input: UpdateCustomerProfileInput,
    ) -> Result<CustomerPayload> {
        let command = input.to_command()?;
        run(ctx, CustomerCommand::UpdateProfile(command), common::meta(ctx, &input.options)?).await
    }

    /// Set parts of the customer's classification.
    async fn classify_customer(&self, ctx: &Context<'_>, input: ClassifyCustomerInput) -> Result<CustomerPayload> {
        let id = customer_id(&input.customer_id)?;
        let mut v = Validator::default();
        let grade = patch(&mut v, "input", &input.grade, |s| Label::parse("grade", s));
        v.finish()?;
        let command = ClassifyCustomer {
            customer_id: id,
            industry: enum_patch(&input.industry),
            scale: enum_patch(&input.scale),
            tenure: enum_patch(&input.tenure),
            value_tier: enum_patch(&input.value_tier),
            lifecycle_segment: enum_patch(&input.lifecycle_segment),
            key_account: input.key_account,
            grade: grade.unwrap_or_default(),
        };
        run(ctx, CustomerCommand::Classify(command), common::meta(ctx, &input.options)?).await
    }

    /// Make a member of staff the customer's account manager (客户经理).
    async fn assign_account_manager(
        &self,
        ctx: &Context<'_>,
        input: AssignAccountManagerInput,
    ) -> Result<CustomerPayload> {
        let id = customer_id(&input.customer_id)?;
        let mut v = Validator::default();
        let manager = input.manager.parse("input.manager", &mut v);
        let reason = opt(&mut v, "input", &input.reason, |s| Text::parse("reason", s));
        v.finish()?;
        let (Some(manager), Some(reason)) = (manager, reason) else {
            return Err(errors::internal("validated input lost a value"));
        };
        let command = AssignAccountManager { customer_id: id, manager, reason };
        run(ctx, CustomerCommand::AssignAccountManager(command), common::meta(ctx, &input.options)?).await
    }

    /// Record the customer's consent to, or refusal of, a use of their personal data.
    async fn record_consent(&self, ctx: &Context<'_>, input: RecordConsentInput) -> Result<CustomerPayload> {
        let id = customer_id(&input.customer_id)?;
        let mut v = Validator::default();
        let note = opt(&mut v, "input", &input.note, |s| Text::parse("note", s));
        v.finish()?;
        let command = RecordConsent {
            customer_id: id,
            purpose: input.purpose.into(),
            granted: input.granted,
            channel: input.channel.map(Into::into),
            note: note.unwrap_or_default(),
        };
        run(ctx, CustomerCommand::RecordConsent(command), common::meta(ctx, &input.options)?).await
    }
}
