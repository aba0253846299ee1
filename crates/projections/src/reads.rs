//! Reads of the read models in one round trip each, and read-your-writes without polling.
//!
//! [`ReadModels`] owns a pool of its own for queries. Each of its connections is opened with
//! the schemas of every active generation on its `search_path` (table names are unique across
//! read models, which a test checks) and `default_transaction_read_only` on, so a read is one
//! prepared statement on a pooled connection: no lookup of the active generation, no
//! transaction, no `SET` per read. PostgreSQL re-plans a prepared statement when the search
//! path it was planned under changes, and a connection is never reused across a switch anyway:
//! when a generation is switched (announced on [`registry::SWITCH_CHANNEL`]) or the listener
//! reconnects, every connection opened before is closed at its next checkout and a new one
//! reads the new active set.
//!
//! The same listener hears the projectors' [`APPLIED_CHANNEL`] notifications. One task turns
//! them into positions (how far each read model has applied the log, one query per burst of
//! notifications, whatever the number of waiting requests), and [`ReadModels::wait`] waits on
//! those positions in memory. A waiter asks the database itself only when nothing has been
//! heard for a while (the listener can be down, and the relay's cursor moves without a
//! projector noticing).

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use sqlx::{
    PgPool, Postgres,
    pool::PoolConnection,
    postgres::{PgListener, PgPoolOptions},
};
use tokio::sync::Notify;

use crate::{
    ProjectionError,
    apply::APPLIED_CHANNEL,
    progress,
    registry::{self, Generation, SWITCH_CHANNEL},
};

/// A read connection idle for longer is pinged before it is used.
const IDLE_PING: Duration = Duration::from_secs(1);

/// How long a waiter trusts the positions it has heard before asking the database.
const QUIET: Duration = Duration::from_millis(250);

/// The read side of the process: a pool for queries on the active generations and the
/// positions they have applied. Cheap to clone.
#[derive(Clone)]
pub struct ReadModels {
    inner: Arc<Inner>,
}

struct Inner {
    /// The process's pool (bookkeeping queries).
    pool: PgPool,
    /// Connections for reads, with the active schemas on their search path.
    reads: PgPool,
    /// The active generations as last read (shared: every read looks one up).
    active: RwLock<HashMap<String, Arc<Generation>>>,
    /// Read connections opened before this instant may have an outdated search path.
    epoch: Arc<Mutex<Instant>>,
    /// How far each read model has applied the log, as last heard.
    positions: Mutex<HashMap<String, i64>>,
    /// Read models with news not yet turned into a position.
    dirty: Mutex<HashSet<String>>,
    /// Wakes the position task.
    kick: Notify,
    /// Wakes waiters when positions change.
    changed: Notify,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ReadModels {
    /// Starts the read side on `pool`'s database: a read pool as large as `pool`, and the
    /// listener and position tasks (which reconnect as needed and end with the runtime).
    pub fn start(pool: PgPool) -> Self {
        let options = pool.options();
        let epoch = Arc::new(Mutex::new(Instant::now()));
        let hook_epoch = epoch.clone();
        let reads = PgPoolOptions::new()
            .max_connections(options.get_max_connections())
            .min_connections(0)
            .acquire_timeout(options.get_acquire_timeout())
            .after_connect(|conn, _| {
                Box::pin(async move {
                    let schemas: Vec<String> = sqlx::query_scalar(
                        "SELECT schema_name FROM projections.generations WHERE status = 'active' ORDER BY name",
                    )
                    .fetch_all(&mut *conn)
                    .await?;
                    // Only names of our own making reach SQL.
                    let path: Vec<&str> = schemas
                        .iter()
                        .map(String::as_str)
                        .filter(|s| crate::registry::valid_schema(s))
                        .chain(["public"])
                        .collect();
                    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "SET search_path TO {}; SET default_transaction_read_only = on",
                        path.join(", ")
                    )))
                    .execute(&mut *conn)
                    .await?;
                    Ok(())
                })
            })
            // A connection in steady use is not pinged before it is handed out (sqlx pings every
            // one it releases anyway); one that sat idle is, so that a restarted server costs
            // a reconnect rather than a failed read.
            .test_before_acquire(false)
            .before_acquire(move |conn, meta| {
                let epoch = *lock(&hook_epoch);
                let fresh = Instant::now().checked_sub(meta.age).is_some_and(|opened| opened >= epoch);
                Box::pin(async move {
                    if fresh && meta.idle_for > IDLE_PING {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(fresh)
                })
            })
            .connect_lazy_with((*pool.connect_options()).clone().application_name("kefu-reads"));
        let inner = Arc::new(Inner {
            pool,
            reads,
            active: RwLock::new(HashMap::new()),
            epoch,
            positions: Mutex::new(HashMap::new()),
            dirty: Mutex::new(HashSet::new()),
            kick: Notify::new(),
            changed: Notify::new(),
        });
        tokio::spawn(listen(Arc::downgrade(&inner)));
        tokio::spawn(track_positions(Arc::downgrade(&inner)));
        ReadModels { inner }
    }

    /// A connection for reading read model `name` (and any other): its statements see the
    /// active generations. Fails as unavailable while `name` has no active generation.
    pub async fn read(&self, name: &str) -> Result<PoolConnection<Postgres>, ProjectionError> {
        self.generation(name).await?;
        self.connection().await
    }

    /// A read connection, whichever read models are built.
    pub async fn connection(&self) -> Result<PoolConnection<Postgres>, ProjectionError> {
        Ok(self.inner.reads.acquire().await?)
    }

    /// The active generation of `name`, from memory; the database is asked only while none
    /// is known (it may just have been built).
    pub async fn generation(&self, name: &str) -> Result<Arc<Generation>, ProjectionError> {
        if let Some(g) = self.inner.active.read().unwrap_or_else(|p| p.into_inner()).get(name) {
            return Ok(g.clone());
        }
        self.inner.refresh_generations().await?;
        self.inner
            .active
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| ProjectionError::Unavailable(format!("the {name} read model has not been built yet")))
    }

    /// The position through which read model `name` has applied every event (0 while it has
    /// not been built), asked of the database now.
    pub async fn applied_through(&self, name: &str) -> Result<i64, ProjectionError> {
        let through = match self.generation(name).await {
            Ok(g) => progress::applied_through(&self.inner.pool, &g).await?,
            Err(ProjectionError::Unavailable(_)) => 0,
            Err(e) => return Err(e),
        };
        self.inner.heard(name, through);
        Ok(through)
    }

    /// Waits up to `timeout` for read model `name` to apply `position`; returns whether it did
    /// and how far it got. Waiters share one position per read model, kept current by the
    /// listener; a waiter asks the database only when it has heard nothing for a while.
    pub async fn wait(&self, name: &str, position: i64, timeout: Duration) -> Result<(bool, i64), ProjectionError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut ask = !lock(&self.inner.positions).contains_key(name);
        loop {
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let through = if ask {
                ask = false;
                self.applied_through(name).await?
            } else {
                lock(&self.inner.positions).get(name).copied().unwrap_or(0)
            };
            if through >= position {
                return Ok((true, through));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok((false, through));
            }
            if tokio::time::timeout((deadline - now).min(QUIET), changed).await.is_err() {
                ask = true;
            }
        }
    }
}

impl Inner {
    /// Reads the active generations; when they differ from what was known, read connections
    /// opened so far are retired and positions forgotten.
    async fn refresh_generations(&self) -> Result<(), ProjectionError> {
        let fresh: HashMap<String, Arc<Generation>> =
            registry::all_active(&self.pool).await?.into_iter().map(|g| (g.name.clone(), Arc::new(g))).collect();
        let mut active = self.active.write().unwrap_or_else(|p| p.into_inner());
        let same = active.len() == fresh.len()
            && fresh.iter().all(|(name, g)| active.get(name).is_some_and(|a| a.generation == g.generation));
        if !same {
            *lock(&self.epoch) = Instant::now();
            let mut positions = lock(&self.positions);
            positions.retain(|name, _| fresh.get(name).map(|g| g.generation) == active.get(name).map(|g| g.generation));
            *active = fresh;
        }
        Ok(())
    }

    /// A generation was (or may have been) switched: retire every read connection opened so
    /// far and read the active generations again.
    async fn switched(&self) {
        *lock(&self.epoch) = Instant::now();
        if let Err(e) = self.refresh_generations().await {
            tracing::debug!(error = %e, "cannot read the active generations");
        }
    }

    /// Records a position heard for `name` (positions only move forward within a generation).
    fn heard(&self, name: &str, through: i64) {
        let mut positions = lock(&self.positions);
        let p = positions.entry(name.to_string()).or_insert(through);
        if through > *p {
            *p = through;
        }
        drop(positions);
        self.changed.notify_waiters();
    }
}

/// Listens for generation switches and applied batches until the read side is dropped.
async fn listen(inner: std::sync::Weak<Inner>) {
    loop {
        let Some(pool) = inner.upgrade().map(|i| i.pool.clone()) else { return };
        match PgListener::connect_with(&pool).await {
            Ok(mut listener) => {
                if listener.listen_all([SWITCH_CHANNEL, APPLIED_CHANNEL]).await.is_ok() {
                    catch_up(&inner).await;
                    // `try_recv` says when the connection was lost (and reconnects on the next
                    // call): whatever was announced meanwhile is read again.
                    loop {
                        match listener.try_recv().await {
                            Ok(Some(n)) => {
                                let Some(i) = inner.upgrade() else { return };
                                if n.channel() == SWITCH_CHANNEL {
                                    i.switched().await;
                                }
                                lock(&i.dirty).insert(n.payload().to_string());
                                i.kick.notify_one();
                            }
                            Ok(None) => catch_up(&inner).await,
                            Err(e) => {
                                tracing::debug!(error = %e, "read-side listener lost; reconnecting");
                                break;
                            }
                        }
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "read-side listener cannot connect; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// After (re)connecting: anything may have happened while nobody listened.
async fn catch_up(inner: &std::sync::Weak<Inner>) {
    let Some(i) = inner.upgrade() else { return };
    i.switched().await;
    let known: Vec<String> = lock(&i.positions).keys().cloned().collect();
    lock(&i.dirty).extend(known);
    i.kick.notify_one();
}

/// Turns notifications into positions: one query per read model per burst of notifications.
async fn track_positions(inner: std::sync::Weak<Inner>) {
    loop {
        let Some(i) = inner.upgrade() else { return };
        let names: Vec<String> = {
            let kicked = i.kick.notified();
            tokio::pin!(kicked);
            kicked.as_mut().enable();
            let names: Vec<String> = lock(&i.dirty).drain().collect();
            if names.is_empty() {
                // Wake now and then to notice the read side is gone.
                let _ = tokio::time::timeout(Duration::from_secs(5), kicked).await;
            }
            names
        };
        if names.is_empty() {
            continue;
        }
        let models = ReadModels { inner: i };
        for name in names {
            if let Err(e) = models.applied_through(&name).await {
                tracing::debug!(projection = %name, error = %e, "cannot read how far the read model has got");
            }
        }
    }
}
