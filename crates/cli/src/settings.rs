//! Typed configuration, read once from flags or `KEFU_…` environment variables.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, ValueEnum};
use kefu_bus::{BusConfig, relay::LostLogPolicy};
use kefu_gateway::auth::AuthConfig;

/// A value that must never be printed (passwords, keys).
#[derive(Clone)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

/// The database.
#[derive(Args, Debug, Clone)]
pub struct DatabaseArgs {
    /// PostgreSQL URL, e.g. postgres://kefu@127.0.0.1:5432/kefu
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Secret,
    /// Connections in the pool.
    #[arg(long, env = "KEFU_DB_MAX_CONNECTIONS", default_value_t = 20)]
    pub db_max_connections: u32,
    /// How long a request waits for a connection before failing as unavailable (ms).
    #[arg(long, env = "KEFU_DB_ACQUIRE_TIMEOUT_MS", default_value_t = 3000)]
    pub db_acquire_timeout_ms: u64,
    /// Stream state this process keeps decided-on between commands (MiB, estimated): a hit
    /// saves reloading the stream; 0 turns the cache off.
    #[arg(long, env = "KEFU_STREAM_CACHE_MB", default_value_t = kefu_app::commands::DEFAULT_CACHE_BYTES >> 20)]
    pub stream_cache_mb: usize,
}

impl DatabaseArgs {
    /// The database URL with the password hidden, for logs.
    pub fn redacted_url(&self) -> String {
        let url = &self.database_url.0;
        match (url.find("://"), url.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                let userinfo = &url[scheme + 3..at];
                let user = userinfo.split(':').next().unwrap_or_default();
                format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
            }
            _ => url.clone(),
        }
    }
}

/// Kafka.
#[derive(Args, Debug, Clone)]
pub struct KafkaArgs {
    /// Bootstrap servers.
    #[arg(long = "kafka-brokers", env = "KEFU_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// The event topic.
    #[arg(long = "kafka-topic", env = "KEFU_KAFKA_TOPIC", default_value = kefu_bus::DEFAULT_TOPIC)]
    pub topic: String,
    /// Partitions when kefu creates the topic (fixed for the topic's life).
    #[arg(long = "kafka-partitions", env = "KEFU_KAFKA_PARTITIONS", default_value_t = 6)]
    pub partitions: i32,
    /// Replication factor when kefu creates the topic.
    #[arg(long = "kafka-replication-factor", env = "KEFU_KAFKA_REPLICATION_FACTOR", default_value_t = 1)]
    pub replication_factor: i32,
    /// Whether kefu may create the topic.
    #[arg(long = "kafka-create-topic", env = "KEFU_KAFKA_CREATE_TOPIC", default_value_t = true, action = clap::ArgAction::Set)]
    pub create_topic: bool,
    /// Extra librdkafka properties, comma separated `key=value` (e.g.
    /// `security.protocol=SASL_SSL,sasl.mechanisms=PLAIN`).
    #[arg(long = "kafka-properties", env = "KEFU_KAFKA_PROPERTIES", default_value = "")]
    pub properties: Secret,
}

impl KafkaArgs {
    /// The bus settings.
    pub fn bus(&self) -> anyhow::Result<BusConfig> {
        let mut bus = BusConfig::new(&self.brokers).with_topic(&self.topic);
        bus.partitions = self.partitions;
        bus.replication_factor = self.replication_factor;
        bus.create_topic = self.create_topic;
        // Split on commas, but a piece without `=` continues the previous value, so
        // list-valued properties work: `debug=cgrp,fetch,security.protocol=SSL`.
        let mut pairs: Vec<String> = Vec::new();
        for piece in self.properties.0.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match pairs.last_mut() {
                Some(last) if !piece.contains('=') => {
                    last.push(',');
                    last.push_str(piece);
                }
                _ => pairs.push(piece.to_string()),
            }
        }
        for pair in pairs {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("KEFU_KAFKA_PROPERTIES: `{pair}` is not key=value"))?;
            bus.client_properties.push((k.trim().to_string(), v.trim().to_string()));
        }
        anyhow::ensure!(bus.partitions >= 1, "KEFU_KAFKA_PARTITIONS must be at least 1");
        Ok(bus)
    }
}

/// What to do when the broker lost published events.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnLostLog {
    /// Stop and say so (production).
    Fail,
    /// Publish the history again from the event store (local brokers with memory storage).
    Republish,
}

impl From<OnLostLog> for LostLogPolicy {
    fn from(v: OnLostLog) -> Self {
        match v {
            OnLostLog::Fail => LostLogPolicy::Fail,
            OnLostLog::Republish => LostLogPolicy::Republish,
        }
    }
}

/// Relay settings.
#[derive(Args, Debug, Clone)]
pub struct RelayArgs {
    /// What to do when the broker no longer has events the relay published.
    #[arg(long, env = "KEFU_ON_LOST_LOG", value_enum, default_value_t = OnLostLog::Fail)]
    pub on_lost_log: OnLostLog,
    /// Events sent per round.
    #[arg(long, env = "KEFU_RELAY_BATCH", default_value_t = 2000)]
    pub relay_batch: i64,
}

/// Projector settings.
#[derive(Args, Debug, Clone)]
pub struct ProjectorArgs {
    /// How far a rebuild that folds the log in memory may grow the process (MiB) before it
    /// writes what it has and applies the rest of the log batch by batch; 0 rebuilds batch by
    /// batch from the start.
    #[arg(long, env = "KEFU_REBUILD_MEMORY_MB", default_value_t = kefu_projections::runner::DEFAULT_REBUILD_MEMORY_MB)]
    pub rebuild_memory_mb: usize,
}

impl ProjectorArgs {
    /// The runner's options.
    pub fn options(&self) -> kefu_projections::runner::RunnerOptions {
        kefu_projections::runner::RunnerOptions { rebuild_memory: self.rebuild_memory_mb << 20, ..Default::default() }
    }
}

/// How callers authenticate.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Everyone is a fixed local developer with every role. Never in production.
    Dev,
    /// A valid JWT bearer token is required.
    Jwt,
}

/// HTTP and authentication.
#[derive(Args, Debug, Clone)]
pub struct HttpArgs {
    /// Address to listen on.
    #[arg(long, env = "KEFU_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Authentication mode.
    #[arg(long, env = "KEFU_AUTH_MODE", value_enum, default_value_t = AuthMode::Jwt)]
    pub auth: AuthMode,
    /// HS256 shared secret for tokens.
    #[arg(long, env = "KEFU_JWT_SECRET")]
    pub jwt_secret: Option<Secret>,
    /// PEM file with the identity provider's public key (RS256 or ES256).
    #[arg(long, env = "KEFU_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,
    /// Required token issuer (`iss`).
    #[arg(long, env = "KEFU_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required token audience (`aud`).
    #[arg(long, env = "KEFU_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Longest a query waits for `minPosition` (ms).
    #[arg(long, env = "KEFU_MAX_WAIT_MS", default_value_t = 5000)]
    pub max_wait_ms: u64,
}

impl HttpArgs {
    /// The authentication settings.
    pub fn auth(&self) -> anyhow::Result<AuthConfig> {
        match self.auth {
            AuthMode::Dev => {
                tracing::warn!(
                    "KEFU_AUTH_MODE=dev: every request acts as the local developer; never use this in production"
                );
                Ok(AuthConfig::development())
            }
            AuthMode::Jwt => match (&self.jwt_secret, &self.jwt_public_key_file) {
                (Some(secret), None) => {
                    anyhow::ensure!(secret.0.len() >= 32, "KEFU_JWT_SECRET must have at least 32 characters");
                    Ok(AuthConfig::hs256(secret.0.as_bytes(), self.jwt_issuer.as_deref(), self.jwt_audience.as_deref()))
                }
                (None, Some(path)) => {
                    let pem = std::fs::read(path)
                        .map_err(|e| anyhow::anyhow!("cannot read KEFU_JWT_PUBLIC_KEY_FILE {}: {e}", path.display()))?;
                    AuthConfig::public_key(&pem, self.jwt_issuer.as_deref(), self.jwt_audience.as_deref())
                        .map_err(|e| anyhow::anyhow!(e))
                }
                (Some(_), Some(_)) => anyhow::bail!("set either KEFU_JWT_SECRET or KEFU_JWT_PUBLIC_KEY_FILE, not both"),
                (None, None) => anyhow::bail!(
                    "KEFU_AUTH_MODE=jwt needs KEFU_JWT_SECRET or KEFU_JWT_PUBLIC_KEY_FILE (or KEFU_AUTH_MODE=dev locally)"
                ),
            },
        }
    }

    /// The wait limit.
    pub fn max_wait(&self) -> Duration {
        Duration::from_millis(self.max_wait_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_logged() {
        let db = DatabaseArgs {
            database_url: Secret("postgres://kefu:hunter2@db:5432/kefu".into()),
            db_max_connections: 1,
            db_acquire_timeout_ms: 1,
            stream_cache_mb: 0,
        };
        assert_eq!(db.redacted_url(), "postgres://kefu:***@db:5432/kefu");
        assert_eq!(format!("{:?}", db.database_url), "***");
    }

    #[test]
    fn kafka_properties_are_parsed() {
        let k = KafkaArgs {
            brokers: "b:9092".into(),
            topic: "t".into(),
            partitions: 3,
            replication_factor: 1,
            create_topic: false,
            properties: Secret("security.protocol=SASL_SSL, sasl.mechanisms=PLAIN".into()),
        };
        let bus = k.bus().unwrap();
        assert_eq!(bus.client_properties.len(), 2);
        assert_eq!(bus.client_properties[0], ("security.protocol".into(), "SASL_SSL".into()));
        let listed = KafkaArgs { properties: Secret("debug=cgrp,fetch,client.rack=r1".into()), ..k.clone() };
        assert_eq!(
            listed.bus().unwrap().client_properties,
            vec![("debug".into(), "cgrp,fetch".into()), ("client.rack".into(), "r1".into())]
        );
        let bad = KafkaArgs { properties: Secret("nonsense".into()), ..k };
        assert!(bad.bus().is_err());
    }
}
