//! The GraphQL schema: queries and mutations merged from one module per area.

use async_graphql::{EmptySubscription, MergedObject, Schema};

pub mod common;
pub mod config;
pub mod customers;
pub mod history;
pub mod interactions;
pub mod loaders;
pub mod ops;
pub mod requests;
pub mod satisfaction;
pub mod vocab;

use crate::State;

/// All queries.
#[derive(MergedObject, Default)]
pub struct Query(
    customers::CustomerQuery,
    interactions::InteractionQuery,
    requests::RequestQuery,
    config::ConfigQuery,
    satisfaction::SatisfactionQuery,
    ops::OpsQuery,
    history::HistoryQuery,
);

/// All mutations.
#[derive(MergedObject, Default)]
pub struct Mutation(
    customers::CustomerMutation,
    interactions::InteractionMutation,
    requests::RequestMutation,
    config::ConfigMutation,
    satisfaction::SatisfactionMutation,
);

/// The executable schema.
pub type KefuSchema = Schema<Query, Mutation, EmptySubscription>;

/// Builds the schema; `state` is available to every resolver.
pub fn build(state: Option<State>) -> KefuSchema {
    let builder =
        Schema::build(Query::default(), Mutation::default(), EmptySubscription).limit_depth(12).limit_complexity(5_000);
    match state {
        Some(s) => builder.data(s).finish(),
        None => builder.finish(),
    }
}

/// The schema in SDL, as checked in at `docs/schema.graphql`.
pub fn sdl() -> String {
    build(None).sdl()
}
