//! Prometheus metrics, computed from PostgreSQL at scrape time (the same figures as the
//! `projections` query and `kefu projections status`).

use std::fmt::Write;

use kefu_projections::{ProjectionError, progress};
use sqlx::PgPool;

fn label(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Renders the metrics text.
pub async fn render(pool: &PgPool, topic: &str) -> Result<String, ProjectionError> {
    let head: i64 = sqlx::query_scalar("SELECT position FROM event_store.log_head").fetch_one(pool).await?;
    let cursor = kefu_store::relay_state::cursor(pool, topic).await?;
    let mut out = String::new();
    let _ = writeln!(out, "# HELP kefu_event_store_head_position Last global position appended.");
    let _ = writeln!(out, "# TYPE kefu_event_store_head_position gauge");
    let _ = writeln!(out, "kefu_event_store_head_position {head}");
    let t = label(topic);
    let _ = writeln!(out, "# HELP kefu_relay_published_position Everything up to here is acknowledged by Kafka.");
    let _ = writeln!(out, "# TYPE kefu_relay_published_position gauge");
    let _ = writeln!(out, "kefu_relay_published_position{{topic=\"{t}\"}} {cursor}");
    let _ = writeln!(out, "# HELP kefu_relay_lag_events Events appended but not yet on Kafka.");
    let _ = writeln!(out, "# TYPE kefu_relay_lag_events gauge");
    let _ = writeln!(out, "kefu_relay_lag_events{{topic=\"{t}\"}} {}", (head - cursor).max(0));

    let status = progress::status(pool).await?;
    let series: [(&str, &str); 4] = [
        ("kefu_projection_applied_through", "Every event up to this position is applied."),
        ("kefu_projection_lag_events", "Events on Kafka not yet applied."),
        ("kefu_projection_lag_seconds", "Age of the oldest event not yet known to be applied."),
        ("kefu_projection_dead_letters", "Streams parked after a failed event."),
    ];
    for (name, help) in series {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for s in &status {
            let labels = format!(
                "projection=\"{}\",generation=\"{}\",status=\"{}\"",
                label(&s.generation.name),
                s.generation.generation,
                s.generation.status
            );
            let value = match name {
                "kefu_projection_applied_through" => s.progress.applied_through as f64,
                "kefu_projection_lag_events" => s.progress.lag_events as f64,
                "kefu_projection_lag_seconds" => s.progress.lag_seconds,
                _ => s.dead_letters.len() as f64,
            };
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
    Ok(out)
}
