//! The live customer 360 is its fold applied in bulk: the same history applied as one batch,
//! one event per batch, or in batches of any size gives the same rows, and each customer's row
//! is the fold of that customer's events (what `customer(asOf:)` shows). No broker involved:
//! records are encoded as the relay encodes them and applied directly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use kefu_app::{Actor, ActorKind, CommandMeta, CommandService, RecordedEvent};
use kefu_contract::Contract;
use kefu_domain::{
    Patch,
    customer::{ClassifyCustomer, CustomerCommand, RecordConsent, UpdateCustomerProfile, examples},
    interaction::{InteractionCommand, InteractionEvent, examples as interactions},
    values::PhoneNumber,
    vocab::{Channel, ConsentPurpose, ValueTier},
};
use kefu_projections::{
    apply::{Record, apply_batch},
    customer360::{self, Customer360},
    registry::{self, Status},
    verify,
};
use kefu_store::{PgEventStore, migrate};
use uuid::Uuid;

fn by() -> CommandMeta {
    CommandMeta::by(Actor {
        id: "agent.chen".into(),
        name: Some("陈静".into()),
        kind: ActorKind::User,
        roles: vec!["agent".into()],
    })
}

/// Customers with profile changes, classifications, consents and contacts on two channels,
/// their commands interleaved so that one batch touches many customers.
async fn history(service: &CommandService, customers: usize) -> anyhow::Result<Vec<Uuid>> {
    let mut ids = Vec::new();
    for _ in 0..customers {
        let (_, mut register) = examples::register_organization();
        register.customer_id = Uuid::now_v7();
        ids.push(register.customer_id);
        service.customer(CustomerCommand::Register(register), by()).await?;
    }
    for round in 0..4 {
        for (n, &id) in ids.iter().enumerate() {
            let mut log = interactions::log_phone_call();
            log.interaction_id = Uuid::now_v7();
            log.customer_id = id;
            log.channel = if (n + round) % 3 == 0 { Channel::Email } else { Channel::Phone };
            log.resolved_at_first_contact = (n + round) % 2 == 0;
            if log.resolved_at_first_contact {
                log.tasks_handed_over.clear();
            }
            let mut meta = by();
            // Out of order in business time now and then: the last contact is the latest one.
            let hour = if round == 2 { 1 } else { 10 + round as i64 };
            meta.occurred_at = Some(Utc.with_ymd_and_hms(2025, 3, 1, 0, 0, 0).unwrap() + chrono::Duration::hours(hour));
            service.interaction(InteractionCommand::Log(log), meta).await?;
            match (n + round) % 4 {
                0 => {
                    let update = UpdateCustomerProfile {
                        customer_id: id,
                        phone: Patch::Set(PhoneNumber::parse("phone", &format!("021-5555 {:04}", n * 10 + round))?),
                        ..Default::default()
                    };
                    service.customer(CustomerCommand::UpdateProfile(update), by()).await?;
                }
                1 => {
                    let tier = if round % 2 == 0 { ValueTier::Potential } else { ValueTier::Important };
                    let classify =
                        ClassifyCustomer { customer_id: id, value_tier: Patch::Set(tier), ..Default::default() };
                    service.customer(CustomerCommand::Classify(classify), by()).await?;
                }
                2 => {
                    let consent = RecordConsent {
                        customer_id: id,
                        purpose: ConsentPurpose::Surveys,
                        granted: round % 2 == 0,
                        channel: Some(Channel::Phone),
                        note: None,
                    };
                    service.customer(CustomerCommand::RecordConsent(consent), by()).await?;
                }
                _ => {}
            }
        }
    }
    Ok(ids)
}

#[tokio::test]
async fn one_batch_event_by_event_or_any_batches_give_the_rows_of_the_fold() -> anyhow::Result<()> {
    let db = kefu_testkit::fresh_database().await?;
    migrate::run(&db.pool).await?;
    kefu_projections::migrate(&db.pool).await?;
    let store = PgEventStore::new(db.pool.clone());
    let service = CommandService::new(Arc::new(store.clone()));
    let customers = history(&service, 12).await?;
    let events: Vec<RecordedEvent> = store.read_after(0, 100_000).await?;
    assert!(events.len() > 12 * 6, "a history of {} events", events.len());
    let contract = Contract::get();
    let records: Vec<Record> = events
        .iter()
        .enumerate()
        .map(|(i, e)| Record { partition: (i % 2) as i32, offset: i as i64, payload: contract.encode(e).unwrap() })
        .collect();

    let mut digests = Vec::new();
    for chunk in [records.len(), 1, 7, 64] {
        let generation = registry::create(&db.pool, &Customer360, "bulk-test", Status::Building).await?;
        for batch in records.chunks(chunk) {
            let outcome = apply_batch(&db.pool, &Customer360, &generation, batch).await?;
            assert_eq!(outcome.applied, batch.len(), "every event applies once (batches of {chunk})");
        }
        // Applying everything again changes nothing.
        let again = apply_batch(&db.pool, &Customer360, &generation, &records).await?;
        assert_eq!((again.applied, again.duplicates), (0, records.len()));
        digests.push((chunk, verify::digests(&db.pool, &Customer360, &generation).await?));

        // Each customer's row is the fold of their events.
        let mut tx = db.pool.begin().await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SET LOCAL search_path TO {}", generation.schema)))
            .execute(&mut *tx)
            .await?;
        for id in &customers {
            let theirs: Vec<RecordedEvent> =
                events.iter().filter(|e| e.stream_id == *id || e.customer_id == Some(*id)).cloned().collect();
            let folded = customer360::fold_view(&theirs)?.expect("registered");
            let stored = customer360::customer(&mut tx, *id).await?.expect("in the read model");
            assert_eq!(stored, folded, "customer {id} in batches of {chunk}");
            let contacts = theirs.iter().filter(|e| e.stream_type == "interaction").count();
            assert_eq!(stored.interaction_count as usize, contacts);
            let mut counts = customer360::channel_counts(&mut tx, *id).await?;
            counts.sort();
            let email = theirs
                .iter()
                .filter(|e| e.stream_type == "interaction")
                .filter(
                    |e| matches!(e.decode(), Ok(InteractionEvent::InteractionLogged(i)) if i.channel == Channel::Email),
                )
                .count() as i32;
            let expected: Vec<(String, i32)> = [("EMAIL", email), ("PHONE", contacts as i32 - email)]
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(c, n)| (c.to_string(), n))
                .collect();
            assert_eq!(counts, expected, "channel counts of {id}");
            assert_eq!(stored.last_contact_at, Some(Utc.with_ymd_and_hms(2025, 3, 1, 13, 0, 0).unwrap()));
        }
    }
    let (_, first) = &digests[0];
    for (chunk, d) in &digests[1..] {
        assert_eq!(d, first, "batches of {chunk} give the rows of one batch");
    }
    Ok(())
}
