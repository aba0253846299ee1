//! Parsed GraphQL documents, kept by their text: frontends send the same few operations
//! with different variables, and parsing one cost more than the rest of a mutation's trip
//! through async-graphql. Validation still runs on every request (it depends on the
//! variables). Bounded: two generations of at most `capacity / 2` documents each, so a client
//! sending endless distinct queries only ever displaces the cache.

use std::{collections::HashMap, sync::Mutex};

use async_graphql::parser::types::ExecutableDocument;

/// The cache.
pub struct Documents {
    capacity: usize,
    max_len: usize,
    inner: Mutex<(HashMap<String, ExecutableDocument>, HashMap<String, ExecutableDocument>)>,
}

impl Documents {
    /// Keeps up to about `capacity` documents of at most `max_len` bytes of text each.
    pub fn new(capacity: usize, max_len: usize) -> Self {
        Documents { capacity, max_len, inner: Mutex::new((HashMap::new(), HashMap::new())) }
    }

    /// Puts the parsed form of `request.query` into the request, from the cache or by parsing
    /// it (a query that does not parse is left for async-graphql to report).
    pub fn prepare(&self, mut request: async_graphql::Request) -> async_graphql::Request {
        if request.query.len() > self.max_len || self.capacity == 0 {
            return request;
        }
        if let Some(doc) = self.get(&request.query) {
            request.set_parsed_query(doc);
            return request;
        }
        if let Ok(doc) = async_graphql::parser::parse_query(&request.query) {
            self.put(request.query.clone(), doc.clone());
            request.set_parsed_query(doc);
        }
        request
    }

    fn get(&self, query: &str) -> Option<ExecutableDocument> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(doc) = g.0.get(query) {
            return Some(doc.clone());
        }
        let (key, doc) = g.1.remove_entry(query)?;
        g.0.insert(key, doc.clone());
        Some(doc)
    }

    fn put(&self, query: String, doc: ExecutableDocument) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.0.len() >= self.capacity / 2 {
            let young = std::mem::take(&mut g.0);
            g.1 = young;
        }
        g.0.insert(query, doc);
    }

    /// Documents held.
    #[cfg(test)]
    fn len(&self) -> usize {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.0.len() + g.1.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_is_parsed_once_and_the_cache_stays_bounded() {
        let cache = Documents::new(4, 1000);
        let mut r = cache.prepare(async_graphql::Request::new("{ a }"));
        assert!(r.parsed_query().is_ok());
        assert_eq!(cache.len(), 1);
        cache.prepare(async_graphql::Request::new("{ a }"));
        assert_eq!(cache.len(), 1);
        for i in 0..50 {
            cache.prepare(async_graphql::Request::new(format!("{{ f{i} }}")));
            assert!(cache.len() <= 4);
        }
        // Not cached: too long, or not GraphQL (async-graphql reports the error).
        cache.prepare(async_graphql::Request::new("{ ".repeat(600)));
        let mut broken = cache.prepare(async_graphql::Request::new("{ a"));
        assert!(broken.parsed_query().is_err());
    }
}
