//! Who is calling: a bearer token (JWT) in production, a fixed development identity locally.
//!
//! Tokens are verified with a shared secret (HS256) or the identity provider's public key
//! (RS256/ES256, PEM). Claims used: `sub` (id, required), `name` or `preferred_username`,
//! `roles` (array of strings), `exp` (required), and `iss`/`aud` when configured.

use axum::http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use kefu_app::{Actor, ActorKind};
use serde::Deserialize;

/// Roles that may change data.
pub const WRITER_ROLES: &[&str] = &["agent", "supervisor", "quality_manager", "admin"];

/// How requests are authenticated.
#[derive(Clone)]
pub enum AuthConfig {
    /// Everyone is this user (local runs only; never in production).
    Development(Actor),
    /// A valid bearer token is required.
    Jwt {
        /// Verification key.
        key: DecodingKey,
        /// Algorithm, issuer, audience, expiry checks.
        validation: Validation,
    },
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthConfig::Development(a) => write!(f, "Development({})", a.id),
            AuthConfig::Jwt { validation, .. } => write!(f, "Jwt({:?})", validation.algorithms),
        }
    }
}

impl AuthConfig {
    /// The development identity: a user with every role.
    pub fn development() -> Self {
        AuthConfig::Development(Actor {
            id: "dev".into(),
            name: Some("Local developer".into()),
            kind: ActorKind::User,
            roles: vec!["agent".into(), "supervisor".into(), "analyst".into(), "auditor".into(), "admin".into()],
        })
    }

    /// HS256 with a shared secret.
    pub fn hs256(secret: &[u8], issuer: Option<&str>, audience: Option<&str>) -> Self {
        AuthConfig::Jwt {
            key: DecodingKey::from_secret(secret),
            validation: validation(Algorithm::HS256, issuer, audience),
        }
    }

    /// RS256 or ES256 with the identity provider's public key in PEM.
    pub fn public_key(pem: &[u8], issuer: Option<&str>, audience: Option<&str>) -> Result<Self, String> {
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            return Ok(AuthConfig::Jwt { key, validation: validation(Algorithm::RS256, issuer, audience) });
        }
        DecodingKey::from_ec_pem(pem)
            .map(|key| AuthConfig::Jwt { key, validation: validation(Algorithm::ES256, issuer, audience) })
            .map_err(|e| format!("the public key is neither RSA nor EC PEM: {e}"))
    }
}

fn validation(algorithm: Algorithm, issuer: Option<&str>, audience: Option<&str>) -> Validation {
    let mut v = Validation::new(algorithm);
    v.set_required_spec_claims(&["exp", "sub"]);
    v.leeway = 30;
    match issuer {
        Some(iss) => v.set_issuer(&[iss]),
        None => v.iss = None,
    }
    match audience {
        Some(aud) => v.set_audience(&[aud]),
        None => v.validate_aud = false,
    }
    v
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    preferred_username: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
}

/// Why a request has no identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer …` header.
    #[error("a bearer token is required (Authorization: Bearer <token>)")]
    Missing,
    /// The token did not verify.
    #[error("the bearer token is not valid: {0}")]
    Invalid(String),
}

/// The caller of a request.
pub fn authenticate(config: &AuthConfig, headers: &HeaderMap) -> Result<Actor, AuthError> {
    match config {
        AuthConfig::Development(actor) => Ok(actor.clone()),
        AuthConfig::Jwt { key, validation } => {
            let header = headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .ok_or(AuthError::Missing)?;
            let token = header
                .strip_prefix("Bearer ")
                .or_else(|| header.strip_prefix("bearer "))
                .ok_or(AuthError::Missing)?
                .trim();
            let data = jsonwebtoken::decode::<Claims>(token, key, validation)
                .map_err(|e| AuthError::Invalid(e.to_string()))?;
            let claims = data.claims;
            Ok(Actor {
                id: claims.sub,
                name: claims.name.or(claims.preferred_username),
                kind: ActorKind::User,
                roles: claims.roles,
            })
        }
    }
}

/// Whether the actor holds any of `roles`.
pub fn has_any_role(actor: &Actor, roles: &[&str]) -> bool {
    actor.roles.iter().any(|r| roles.contains(&r.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};

    fn token(secret: &[u8], claims: serde_json::Value) -> String {
        encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret)).unwrap()
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(axum::http::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
        h
    }

    #[test]
    fn a_valid_token_names_the_actor() {
        let config = AuthConfig::hs256(b"s3cret", Some("https://idp.example"), None);
        let exp = chrono::Utc::now().timestamp() + 600;
        let t = token(
            b"s3cret",
            serde_json::json!({"sub": "agent.chen", "name": "陈静", "roles": ["agent"], "exp": exp, "iss": "https://idp.example"}),
        );
        let actor = authenticate(&config, &bearer(&t)).unwrap();
        assert_eq!(actor.id, "agent.chen");
        assert_eq!(actor.name.as_deref(), Some("陈静"));
        assert!(has_any_role(&actor, WRITER_ROLES));
    }

    #[test]
    fn bad_tokens_are_refused() {
        let config = AuthConfig::hs256(b"s3cret", None, None);
        assert_eq!(authenticate(&config, &HeaderMap::new()), Err(AuthError::Missing));
        let exp = chrono::Utc::now().timestamp() + 600;
        let forged = token(b"other", serde_json::json!({"sub": "x", "exp": exp}));
        assert!(matches!(authenticate(&config, &bearer(&forged)), Err(AuthError::Invalid(_))));
        let expired = token(b"s3cret", serde_json::json!({"sub": "x", "exp": 1_000_000}));
        assert!(matches!(authenticate(&config, &bearer(&expired)), Err(AuthError::Invalid(_))));
        let no_sub = token(b"s3cret", serde_json::json!({"exp": exp}));
        assert!(matches!(authenticate(&config, &bearer(&no_sub)), Err(AuthError::Invalid(_))));
    }
}
