//! Killing the projector mid-batch and restarting it leaves the read model exactly as a clean
//! rebuild from the log makes it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{sync::Arc, time::Duration};

use kefu_app::{Actor, ActorKind, CommandMeta, CommandService};
use kefu_domain::{
    customer::{CustomerCommand, examples},
    interaction::{InteractionCommand, examples as interactions},
};
use kefu_projections::{customer360::Customer360, progress, registry, verify};
use kefu_testkit::KefuProcess;
use support::*;
use uuid::Uuid;

async fn write_history(service: &CommandService, customers: usize, contacts: usize) -> anyhow::Result<()> {
    let actor = Actor { id: "loader".into(), name: None, kind: ActorKind::Import, roles: vec![] };
    for _ in 0..customers {
        let (_, mut register) = examples::register_organization();
        register.customer_id = Uuid::now_v7();
        let id = register.customer_id;
        service.customer(CustomerCommand::Register(register), CommandMeta::by(actor.clone())).await?;
        for _ in 0..contacts {
            let mut log = interactions::log_phone_call();
            log.interaction_id = Uuid::now_v7();
            log.customer_id = id;
            service.interaction(InteractionCommand::Log(log), CommandMeta::by(actor.clone())).await?;
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_projector_killed_mid_batch_resumes_to_the_same_state_as_a_clean_rebuild() -> anyhow::Result<()> {
    let db = kefu_testkit::fresh_database().await?;
    let topic = kefu_testkit::unique_topic("crash");
    let env = base_env(&db, &topic)?;
    kefu_store::migrate::run(&db.pool).await?;
    kefu_projections::migrate(&db.pool).await?;
    let service = CommandService::new(Arc::new(kefu_store::PgEventStore::new(db.pool.clone())));
    write_history(&service, 60, 20).await?; // 60 × (3 + 20) = 1380 events
    let head: i64 = sqlx::query_scalar("SELECT position FROM event_store.log_head").fetch_one(&db.pool).await?;

    let relay = KefuProcess::start(&["relay"], &env, false)?;
    let mut projector = KefuProcess::start(&["project"], &env, false)?;

    // Kill the projector while it is part-way through the log (several times).
    let generation = kefu_testkit::eventually(Duration::from_secs(60), "the projector to start", || {
        let pool = db.pool.clone();
        async move { Ok(registry::active(&pool, "customer360").await?) }
    })
    .await?;
    for _ in 0..3 {
        kefu_testkit::eventually(Duration::from_secs(60), "some progress", || {
            let pool = db.pool.clone();
            let g = generation.clone();
            async move {
                let p = progress::of(&pool, &g).await?;
                Ok((p.records_consumed > 0).then_some(()))
            }
        })
        .await?;
        projector.kill();
        projector = KefuProcess::start(&["project"], &env, false)?;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (ok, through) = progress::wait_for(&db.pool, "customer360", head, Duration::from_secs(120)).await?;
    assert!(ok, "the restarted projector is stuck at {through} of {head}:\n{}", projector.log_tail(40));
    projector.terminate()?;

    // A clean rebuild from the log, compared table by table, row by row.
    let rebuild = KefuProcess::start(&["projections", "rebuild", "customer360"], &env, false)?;
    let rebuilt = kefu_testkit::eventually(Duration::from_secs(120), "the rebuild", || {
        let pool = db.pool.clone();
        let old = generation.generation;
        async move { Ok(registry::active(&pool, "customer360").await?.filter(|g| g.generation != old)) }
    })
    .await?;
    drop(rebuild);
    let live = registry::get(&db.pool, "customer360", generation.generation).await?.unwrap();
    let live_digest = verify::digests(&db.pool, &Customer360, &live).await?;
    let rebuilt_digest = verify::digests(&db.pool, &Customer360, &rebuilt).await?;
    assert_eq!(live_digest, rebuilt_digest);
    assert_eq!(live_digest[0].rows, 60, "customers");
    assert_eq!(live_digest[1].rows, 1200, "interactions");
    drop(relay);
    Ok(())
}
