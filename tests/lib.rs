//! Black-box tests of kefu: each test starts the `kefu` binary against the test PostgreSQL
//! and broker and talks to it as users do (GraphQL over HTTP, Kafka consumers). The tests
//! are in this directory; `support/` holds what they share.
