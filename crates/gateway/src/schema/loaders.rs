//! The reads of one GraphQL request.
//!
//! [`RequestReads`]: the request's statements run one after the other on one read connection,
//! taken from the pool at the first read and given back when the request ends (sqlx checks a
//! connection with a round trip each time it is given back, so one checkout per request
//! rather than per statement). A read that finds the connection busy (sibling fields resolving
//! at once) takes another one from the pool rather than wait.
//!
//! [`Loaders`]: batched reads of nested objects (no N+1): a request's customer, a survey's
//! request, a request's survey, a survey's template, a customer's first page of requests, of
//! interactions and of surveys, their contacts per channel and satisfaction trajectory. Each
//! kind is loaded for every item of a list in one statement; outside lists, or without
//! loaders (a schema run outside the HTTP handler), each object is read on its own.

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_graphql::{
    Context, Result,
    dataloader::{DataLoader, Loader},
};
use kefu_projections::{
    ProjectionError, ReadModels,
    customer360::{self, CustomerView, InteractionView},
    satisfaction::{self, SurveyView, TemplateRow, TrajectoryPoint},
    service_requests::{self, RequestPage, StoredRequest},
};
use sqlx::{PgConnection, Postgres, pool::PoolConnection};
use uuid::Uuid;

use crate::errors;

/// The batching loaders of one GraphQL request (nothing is cached across requests, or between
/// two loads of the same object in one request).
pub type Loaders = DataLoader<ReadLoader>;

/// The read connection of one GraphQL request.
pub struct RequestReads {
    reads: ReadModels,
    conn: tokio::sync::Mutex<Option<PoolConnection<Postgres>>>,
}

/// A connection for one read: the request's own, or one of the pool's.
pub enum ReadConnection<'a> {
    /// The request's connection.
    Request(tokio::sync::MutexGuard<'a, Option<PoolConnection<Postgres>>>),
    /// A connection of its own (the request's was busy, or there is no request).
    Own(PoolConnection<Postgres>),
}

impl std::ops::Deref for ReadConnection<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        match self {
            // Filled before the guard is handed out.
            ReadConnection::Request(g) => g.as_deref().unwrap_or_else(|| unreachable!("an empty request connection")),
            ReadConnection::Own(c) => c,
        }
    }
}

impl std::ops::DerefMut for ReadConnection<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match self {
            ReadConnection::Request(g) => {
                g.as_deref_mut().unwrap_or_else(|| unreachable!("an empty request connection"))
            }
            ReadConnection::Own(c) => c,
        }
    }
}

impl RequestReads {
    fn new(reads: ReadModels) -> Self {
        RequestReads { reads, conn: tokio::sync::Mutex::new(None) }
    }

    /// A connection for reading read model `name`; unavailable while it has not been built.
    pub async fn read(&self, name: &str) -> Result<ReadConnection<'_>, ProjectionError> {
        self.reads.generation(name).await?;
        match self.conn.try_lock() {
            Ok(mut guard) => {
                if guard.is_none() {
                    *guard = Some(self.reads.connection().await?);
                }
                Ok(ReadConnection::Request(guard))
            }
            Err(_) => Ok(ReadConnection::Own(self.reads.connection().await?)),
        }
    }
}

/// Creates the reads and the loaders of one request.
pub fn for_request(reads: &ReadModels) -> (Arc<RequestReads>, Loaders) {
    let request = Arc::new(RequestReads::new(reads.clone()));
    // Loads issued while the items of a list resolve together form one batch, which runs in a
    // task of its own, in the span of the request that started it.
    let loaders = DataLoader::new(ReadLoader { reads: request.clone() }, |batch| {
        tokio::spawn(tracing::Instrument::in_current_span(batch))
    })
    .delay(Duration::ZERO);
    (request, loaders)
}

/// Reads batches of objects from the read models.
pub struct ReadLoader {
    reads: Arc<RequestReads>,
}

type LoadError = Arc<ProjectionError>;

/// A customer, by id.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CustomerKey(pub Uuid);
/// A request, by id.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestKey(pub Uuid);
/// The survey about a request, by the request's id.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SurveyOfRequestKey(pub Uuid);
/// A template version.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TemplateKey(pub Uuid, pub i32);
/// The first page of a customer's interaction timeline, newest first (page size).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimelineKey(pub Uuid, pub i64);
/// A customer's contacts per channel.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChannelCountsKey(pub Uuid);
/// A customer's newest surveys (how many).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SurveysOfCustomerKey(pub Uuid, pub i64);
/// A customer's satisfaction trajectory.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrajectoryKey(pub Uuid);
/// The first page of a customer's requests, newest first.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestsOfCustomerKey {
    /// The customer.
    pub customer: Uuid,
    /// Closed, withdrawn and merged ones too.
    pub include_closed: bool,
    /// Page size.
    pub first: i64,
    /// Whether the page's selection needs the requests' aggregates.
    pub aggregates: service_requests::Aggregates,
}

impl Loader<CustomerKey> for ReadLoader {
    type Value = CustomerView;
    type Error = LoadError;

    async fn load(&self, keys: &[CustomerKey]) -> Result<HashMap<CustomerKey, CustomerView>, LoadError> {
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let mut conn = self.reads.read(customer360::NAME).await?;
        let views = customer360::customers_by_id(&mut conn, &ids).await?;
        Ok(views.into_iter().map(|v| (CustomerKey(v.customer_id), v)).collect())
    }
}

impl Loader<RequestKey> for ReadLoader {
    type Value = StoredRequest;
    type Error = LoadError;

    async fn load(&self, keys: &[RequestKey]) -> Result<HashMap<RequestKey, StoredRequest>, LoadError> {
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let mut conn = self.reads.read(service_requests::NAME).await?;
        let views = service_requests::requests_by_id(&mut conn, &ids).await?;
        Ok(views.into_iter().map(|v| (RequestKey(v.listed.request_id), v)).collect())
    }
}

impl Loader<SurveyOfRequestKey> for ReadLoader {
    type Value = SurveyView;
    type Error = LoadError;

    async fn load(&self, keys: &[SurveyOfRequestKey]) -> Result<HashMap<SurveyOfRequestKey, SurveyView>, LoadError> {
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let mut conn = self.reads.read(satisfaction::NAME).await?;
        let views = satisfaction::surveys_of_requests(&mut conn, &ids).await?;
        Ok(views.into_iter().filter_map(|v| Some((SurveyOfRequestKey(v.request_id?), v))).collect())
    }
}

impl Loader<TemplateKey> for ReadLoader {
    type Value = TemplateRow;
    type Error = LoadError;

    async fn load(&self, keys: &[TemplateKey]) -> Result<HashMap<TemplateKey, TemplateRow>, LoadError> {
        let pairs: Vec<(Uuid, i32)> = keys.iter().map(|k| (k.0, k.1)).collect();
        let mut conn = self.reads.read(satisfaction::NAME).await?;
        let rows = satisfaction::templates_by_key(&mut conn, &pairs).await?;
        Ok(rows.into_iter().map(|t| (TemplateKey(t.template_id, t.version), t)).collect())
    }
}

impl Loader<RequestsOfCustomerKey> for ReadLoader {
    type Value = RequestPage;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[RequestsOfCustomerKey],
    ) -> Result<HashMap<RequestsOfCustomerKey, RequestPage>, LoadError> {
        // One statement per page shape (a list asks for one shape).
        let mut shapes: HashMap<(bool, i64, service_requests::Aggregates), Vec<Uuid>> = HashMap::new();
        for k in keys {
            shapes.entry((k.include_closed, k.first, k.aggregates)).or_default().push(k.customer);
        }
        let mut conn = self.reads.read(service_requests::NAME).await?;
        let mut out = HashMap::new();
        if let [k] = keys {
            // One customer: the plain page query (the index in order, no join).
            let filter = service_requests::BacklogFilter::of_customer(k.customer, k.include_closed);
            let page = service_requests::backlog(
                &mut conn,
                &filter,
                service_requests::BacklogOrder::NewestFirst,
                k.first,
                None,
                k.aggregates,
            )
            .await?;
            out.insert(*k, page);
            return Ok(out);
        }
        for ((include_closed, first, aggregates), customers) in shapes {
            let pages =
                service_requests::requests_of_customers(&mut conn, &customers, include_closed, first, aggregates)
                    .await?;
            out.extend(
                pages.into_iter().map(|(customer, page)| {
                    (RequestsOfCustomerKey { customer, include_closed, first, aggregates }, page)
                }),
            );
        }
        Ok(out)
    }
}

/// Groups keys that differ only by a page size, so a list (which asks for one size) costs
/// one statement per size.
fn by_size<K: Copy>(keys: &[K], parts: impl Fn(K) -> (Uuid, i64)) -> HashMap<i64, Vec<Uuid>> {
    let mut sizes: HashMap<i64, Vec<Uuid>> = HashMap::new();
    for k in keys {
        let (id, size) = parts(*k);
        sizes.entry(size).or_default().push(id);
    }
    sizes
}

impl Loader<TimelineKey> for ReadLoader {
    type Value = (Vec<InteractionView>, bool);
    type Error = LoadError;

    async fn load(&self, keys: &[TimelineKey]) -> Result<HashMap<TimelineKey, Self::Value>, LoadError> {
        let mut conn = self.reads.read(customer360::NAME).await?;
        let mut out = HashMap::new();
        for (first, customers) in by_size(keys, |k| (k.0, k.1)) {
            let pages = customer360::timelines(&mut conn, &customers, first).await?;
            out.extend(pages.into_iter().map(|(customer, page)| (TimelineKey(customer, first), page)));
        }
        Ok(out)
    }
}

impl Loader<ChannelCountsKey> for ReadLoader {
    type Value = Vec<(String, i32)>;
    type Error = LoadError;

    async fn load(&self, keys: &[ChannelCountsKey]) -> Result<HashMap<ChannelCountsKey, Self::Value>, LoadError> {
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let mut conn = self.reads.read(customer360::NAME).await?;
        let counts = customer360::channel_counts_of(&mut conn, &ids).await?;
        Ok(counts.into_iter().map(|(id, c)| (ChannelCountsKey(id), c)).collect())
    }
}

impl Loader<SurveysOfCustomerKey> for ReadLoader {
    type Value = Vec<SurveyView>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[SurveysOfCustomerKey],
    ) -> Result<HashMap<SurveysOfCustomerKey, Self::Value>, LoadError> {
        let mut conn = self.reads.read(satisfaction::NAME).await?;
        let mut out = HashMap::new();
        for (first, customers) in by_size(keys, |k| (k.0, k.1)) {
            let surveys = satisfaction::surveys_of_customers(&mut conn, &customers, first).await?;
            out.extend(surveys.into_iter().map(|(customer, s)| (SurveysOfCustomerKey(customer, first), s)));
        }
        Ok(out)
    }
}

impl Loader<TrajectoryKey> for ReadLoader {
    type Value = Vec<TrajectoryPoint>;
    type Error = LoadError;

    async fn load(&self, keys: &[TrajectoryKey]) -> Result<HashMap<TrajectoryKey, Self::Value>, LoadError> {
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let mut conn = self.reads.read(satisfaction::NAME).await?;
        let points = satisfaction::customer_trajectories(&mut conn, &ids).await?;
        Ok(points.into_iter().map(|(id, p)| (TrajectoryKey(id), p)).collect())
    }
}

fn unshared(e: LoadError) -> async_graphql::Error {
    errors::projection(match Arc::try_unwrap(e) {
        Ok(e) => e,
        Err(shared) => match &*shared {
            ProjectionError::Unavailable(m) => ProjectionError::Unavailable(m.clone()),
            ProjectionError::Poison(m) => ProjectionError::Poison(m.clone()),
            ProjectionError::Other(m) => ProjectionError::Other(m.clone()),
        },
    })
}

/// Whether the field being resolved is under a list item (where siblings load the same kind
/// of object at the same time). Elsewhere there is nothing to batch, and a read alone does not
/// wait for the batch to form.
fn in_a_list(ctx: &Context<'_>) -> bool {
    let mut node = ctx.path_node.as_ref();
    while let Some(n) = node {
        if matches!(n.segment, async_graphql::QueryPathSegment::Index(_)) {
            return true;
        }
        node = n.parent;
    }
    false
}

/// A loader reading on its own (outside a list): on the request's connection, or, without a
/// request (a schema run outside the HTTP handler), on one of its own.
fn alone(ctx: &Context<'_>) -> ReadLoader {
    let reads = match ctx.data_opt::<Arc<RequestReads>>() {
        Some(r) => r.clone(),
        None => Arc::new(RequestReads::new(super::common::state(ctx).reads.clone())),
    };
    ReadLoader { reads }
}

/// One object through the request's loaders when it is in a list, or read alone.
async fn one<K>(ctx: &Context<'_>, key: K) -> Result<Option<<ReadLoader as Loader<K>>::Value>>
where
    K: Send + Sync + std::hash::Hash + Eq + Clone + 'static,
    ReadLoader: Loader<K, Error = LoadError>,
{
    match ctx.data_opt::<Loaders>().filter(|_| in_a_list(ctx)) {
        Some(loaders) => loaders.load_one(key).await.map_err(unshared),
        None => Ok(alone(ctx).load(std::slice::from_ref(&key)).await.map_err(unshared)?.remove(&key)),
    }
}

/// A customer as the 360 view has them.
pub async fn customer(ctx: &Context<'_>, id: Uuid) -> Result<Option<CustomerView>> {
    one(ctx, CustomerKey(id)).await
}

/// A request as the read model has it.
pub async fn request(ctx: &Context<'_>, id: Uuid) -> Result<Option<StoredRequest>> {
    one(ctx, RequestKey(id)).await
}

/// The survey about a request, if one was sent.
pub async fn survey_of_request(ctx: &Context<'_>, request_id: Uuid) -> Result<Option<SurveyView>> {
    one(ctx, SurveyOfRequestKey(request_id)).await
}

/// A template version.
pub async fn template(ctx: &Context<'_>, id: Uuid, version: i32) -> Result<Option<TemplateRow>> {
    one(ctx, TemplateKey(id, version)).await
}

/// The first page of a customer's interaction timeline, newest first.
pub async fn timeline(ctx: &Context<'_>, customer: Uuid, first: i64) -> Result<(Vec<InteractionView>, bool)> {
    Ok(one(ctx, TimelineKey(customer, first)).await?.unwrap_or_default())
}

/// A customer's contacts per channel, most used first.
pub async fn channel_counts(ctx: &Context<'_>, customer: Uuid) -> Result<Vec<(String, i32)>> {
    Ok(one(ctx, ChannelCountsKey(customer)).await?.unwrap_or_default())
}

/// A customer's newest surveys.
pub async fn surveys_of_customer(ctx: &Context<'_>, customer: Uuid, first: i64) -> Result<Vec<SurveyView>> {
    Ok(one(ctx, SurveysOfCustomerKey(customer, first)).await?.unwrap_or_default())
}

/// A customer's answered surveys, oldest first, with their indices.
pub async fn trajectory(ctx: &Context<'_>, customer: Uuid) -> Result<Vec<TrajectoryPoint>> {
    Ok(one(ctx, TrajectoryKey(customer)).await?.unwrap_or_default())
}

/// The first page of a customer's requests, newest first.
pub async fn requests_of_customer(
    ctx: &Context<'_>,
    customer: Uuid,
    include_closed: bool,
    first: i64,
    aggregates: service_requests::Aggregates,
) -> Result<RequestPage> {
    Ok(one(ctx, RequestsOfCustomerKey { customer, include_closed, first, aggregates }).await?.unwrap_or_default())
}

/// Many objects of one kind at once: through the request's loaders when in a list (one batch
/// with the siblings'), otherwise in one read of their own.
async fn many<K>(ctx: &Context<'_>, keys: Vec<K>) -> Result<HashMap<K, <ReadLoader as Loader<K>>::Value>>
where
    K: Send + Sync + std::hash::Hash + Eq + Clone + 'static,
    ReadLoader: Loader<K, Error = LoadError>,
{
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    match ctx.data_opt::<Loaders>().filter(|_| in_a_list(ctx)) {
        Some(loaders) => loaders.load_many(keys).await.map_err(unshared),
        None => alone(ctx).load(&keys).await.map_err(unshared),
    }
}

/// Template versions, all in one read.
pub async fn templates(ctx: &Context<'_>, keys: Vec<(Uuid, i32)>) -> Result<HashMap<(Uuid, i32), TemplateRow>> {
    let mut keys: Vec<TemplateKey> = keys.into_iter().map(|(id, v)| TemplateKey(id, v)).collect();
    keys.sort_unstable_by_key(|k| (k.0, k.1));
    keys.dedup();
    Ok(many(ctx, keys).await?.into_iter().map(|(k, t)| ((k.0, k.1), t)).collect())
}
