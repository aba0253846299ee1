//! The satisfaction read model's one rule set: surveys, their answers, templates with their
//! items, reviews and alerts as rows in memory, each event folded onto them by [`Rows::fold`].
//!
//! A batch reads the rows its events touch (one query per table), folds, and writes what
//! changed with one statement per table; a rebuild folds the whole log into empty rows and
//! writes them with `COPY` ([`BulkSatisfaction`]). Both run the same fold.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use kefu_app::RecordedEvent;
use kefu_domain::{
    satisfaction_monitor::SatisfactionMonitorEvent, survey::SurveyEvent, survey_template::SurveyTemplateEvent,
};
use serde_json::Value;
use sqlx::{PgConnection, types::Json};
use uuid::Uuid;

use crate::{ProjectionError, bulk::BulkFold, copy::CopyRows};

/// A `surveys` row, named as its columns.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct SurveyRow {
    survey_id: Uuid,
    template_id: Uuid,
    template_version: i32,
    audience: String,
    customer_id: Uuid,
    request_id: Option<Uuid>,
    request_type: Option<String>,
    category: Option<String>,
    request_channel: Option<String>,
    agent_id: Option<String>,
    agent_name: Option<String>,
    department: Option<String>,
    customer_tier: Option<String>,
    customer_segment: Option<String>,
    trigger: String,
    campaign: Option<String>,
    policy_id: Option<Uuid>,
    channel: String,
    sent_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    reminders: Vec<DateTime<Utc>>,
    reminders_sent: i32,
    next_reminder_at: Option<DateTime<Utc>>,
    state: String,
    responded_at: Option<DateTime<Utc>>,
    complete: bool,
    response_count: i32,
    response_channel: Option<String>,
    expired_at: Option<DateTime<Utc>>,
    follow_up: Option<Value>,
    follow_up_state: String,
    follow_up_due_at: Option<DateTime<Utc>>,
    follow_up_department: Option<String>,
    follow_up_assignee: Option<String>,
    follow_up_request_id: Option<Uuid>,
    follow_up_done: Option<Value>,
    version: i64,
    last_position: i64,
}

/// An `answers` row.
#[derive(Debug, Clone, serde::Serialize)]
struct AnswerRow {
    survey_id: Uuid,
    question: String,
    value: Option<i32>,
    text: Option<String>,
}

/// A `templates` row.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct TemplateRow {
    template_id: Uuid,
    version: i32,
    name: String,
    audience: String,
    published: bool,
    content: Value,
    defined_at: DateTime<Utc>,
}

/// A `template_items` row.
#[derive(Debug, Clone, serde::Serialize)]
struct ItemRow {
    template_id: Uuid,
    version: i32,
    question: String,
    position: i32,
    kind: &'static str,
    dimension: Option<String>,
    expectation: bool,
    leaf_weight: Option<f64>,
    indicator: Option<String>,
    indicator_path: Option<String>,
    department: Option<String>,
}

/// A `reviews` row.
#[derive(Debug, Clone, serde::Serialize)]
struct ReviewRow {
    rule_id: Uuid,
    label: String,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    groups: i32,
    alerts: i32,
    at: DateTime<Utc>,
}

/// An `alerts` row.
#[derive(Debug, Clone, serde::Serialize)]
struct AlertRow {
    rule_id: Uuid,
    label: String,
    department: String,
    index_kind: &'static str,
    period: &'static str,
    previous_hundredths: i64,
    current_hundredths: i64,
    previous_responses: i32,
    current_responses: i32,
    raised_at: DateTime<Utc>,
}

/// The rows a run of events touches (a batch: read first; a rebuild: from nothing), and
/// which of them changed.
#[derive(Default)]
struct Rows {
    surveys: BTreeMap<Uuid, SurveyRow>,
    changed_surveys: BTreeSet<Uuid>,
    /// Answers of the surveys whose response was recorded (replacing the stored ones).
    answers: BTreeMap<Uuid, Vec<AnswerRow>>,
    templates: BTreeMap<(Uuid, i32), TemplateRow>,
    changed_templates: BTreeSet<(Uuid, i32)>,
    /// Items of the templates (re)defined (replacing the stored ones).
    items: BTreeMap<(Uuid, i32), Vec<ItemRow>>,
    /// New reviews and alerts (a stored one is kept: the first recorded stands).
    reviews: BTreeMap<(Uuid, String), ReviewRow>,
    alerts: BTreeMap<(Uuid, String, String), AlertRow>,
}

/// An event this read model reads, decoded once.
enum Decoded {
    Template(SurveyTemplateEvent),
    Survey(SurveyEvent),
    Monitor(SatisfactionMonitorEvent),
    Other,
}

fn decode(e: &RecordedEvent) -> Result<Decoded, ProjectionError> {
    Ok(match e.stream_type.as_str() {
        "survey_template" => Decoded::Template(e.decode()?),
        "survey" => Decoded::Survey(e.decode()?),
        "satisfaction_monitor" => Decoded::Monitor(e.decode()?),
        _ => Decoded::Other,
    })
}

impl Rows {
    /// One event onto the rows. A survey's later event without its row changes nothing (as a
    /// stored survey that was never sent has nothing to change); a second sending of one
    /// survey is refused (its stream is parked).
    fn fold(&mut self, e: &RecordedEvent, event: &Decoded) -> Result<(), ProjectionError> {
        match event {
            Decoded::Template(t) => self.fold_template(e, t),
            Decoded::Survey(s) => self.fold_survey(e, s),
            Decoded::Monitor(m) => {
                self.fold_monitor(m);
                Ok(())
            }
            Decoded::Other => Ok(()),
        }
    }

    fn fold_template(&mut self, e: &RecordedEvent, event: &SurveyTemplateEvent) -> Result<(), ProjectionError> {
        match event {
            SurveyTemplateEvent::SurveyTemplateDefined(d) => {
                let leaves = d.content.leaves().map_err(|err| ProjectionError::Poison(err.to_string()))?;
                let key = (d.template_id, d.version as i32);
                // A redefinition keeps whether the version was published.
                let published = self.templates.get(&key).is_some_and(|t| t.published);
                let content = serde_json::to_value(&d.content)
                    .map_err(|err| ProjectionError::Poison(format!("template content: {err}")))?;
                self.templates.insert(
                    key,
                    TemplateRow {
                        template_id: d.template_id,
                        version: key.1,
                        name: d.content.name.as_str().to_string(),
                        audience: d.content.audience.as_str().to_string(),
                        published,
                        content,
                        defined_at: e.occurred_at,
                    },
                );
                self.changed_templates.insert(key);
                let items = d
                    .content
                    .questions
                    .iter()
                    .enumerate()
                    .map(|(i, q)| {
                        let leaf = leaves.iter().find(|l| l.question == q.code);
                        ItemRow {
                            template_id: d.template_id,
                            version: key.1,
                            question: q.code.as_str().to_string(),
                            position: i as i32,
                            kind: q.kind.as_str(),
                            dimension: q.dimension.as_ref().map(|x| x.as_str().to_string()),
                            expectation: q.expectation_of.is_some(),
                            leaf_weight: leaf.map(|l| l.weight),
                            indicator: leaf.map(|l| l.indicator.as_str().to_string()),
                            indicator_path: leaf.map(|l| l.path.clone()),
                            department: leaf.map(|l| l.department.as_str().to_string()),
                        }
                    })
                    .collect();
                self.items.insert(key, items);
            }
            SurveyTemplateEvent::SurveyTemplatePublished(p) => {
                let key = (p.template_id, p.version as i32);
                if let Some(t) = self.templates.get_mut(&key) {
                    t.published = true;
                    self.changed_templates.insert(key);
                }
            }
        }
        Ok(())
    }

    fn fold_survey(&mut self, e: &RecordedEvent, event: &SurveyEvent) -> Result<(), ProjectionError> {
        let id = e.stream_id;
        if let SurveyEvent::SurveySent(s) = event {
            if self.surveys.contains_key(&id) {
                return Err(ProjectionError::Poison(format!("survey {id} was already sent")));
            }
            let c = &s.context;
            self.surveys.insert(
                id,
                SurveyRow {
                    survey_id: id,
                    template_id: s.template_id,
                    template_version: s.template_version as i32,
                    audience: s.audience.as_str().to_string(),
                    customer_id: s.customer_id,
                    request_id: c.request_id,
                    request_type: c.request_type.map(|x| x.as_str().to_string()),
                    category: c.category.as_ref().map(|x| x.as_str().to_string()),
                    request_channel: c.request_channel.map(|x| x.as_str().to_string()),
                    agent_id: c.agent.as_ref().map(|a| a.id.as_str().to_string()),
                    agent_name: c.agent.as_ref().and_then(|a| a.name.as_ref()).map(|n| n.as_str().to_string()),
                    department: c.department.as_ref().map(|x| x.as_str().to_string()),
                    customer_tier: c.customer_tier.map(|x| x.as_str().to_string()),
                    customer_segment: c.customer_segment.map(|x| x.as_str().to_string()),
                    trigger: s.trigger.as_str().to_string(),
                    campaign: s.campaign.as_ref().map(|x| x.as_str().to_string()),
                    policy_id: s.policy_id,
                    channel: s.channel.as_str().to_string(),
                    sent_at: s.sent_at,
                    expires_at: s.expires_at,
                    reminders: s.reminders.clone(),
                    reminders_sent: 0,
                    next_reminder_at: s.reminders.first().copied(),
                    state: "SENT".into(),
                    responded_at: None,
                    complete: false,
                    response_count: 0,
                    response_channel: None,
                    expired_at: None,
                    follow_up: None,
                    follow_up_state: "NONE".into(),
                    follow_up_due_at: None,
                    follow_up_department: None,
                    follow_up_assignee: None,
                    follow_up_request_id: None,
                    follow_up_done: None,
                    version: e.stream_version,
                    last_position: e.global_position,
                },
            );
            self.changed_surveys.insert(id);
            return Ok(());
        }
        if let SurveyEvent::SurveyResponseRecorded(r) = event {
            // The answers of the response that counts, whether or not the survey is known.
            let answers = r
                .answers
                .iter()
                .map(|a| AnswerRow {
                    survey_id: id,
                    question: a.question.as_str().to_string(),
                    value: a.value,
                    text: a.text.as_ref().map(|t| t.as_str().to_string()),
                })
                .collect();
            self.answers.insert(id, answers);
        }
        let Some(row) = self.surveys.get_mut(&id) else { return Ok(()) };
        match event {
            SurveyEvent::SurveySent(_) => {}
            SurveyEvent::SurveyReminderSent(r) => {
                row.reminders_sent = r.number as i32;
                row.next_reminder_at = row.reminders.get(r.number as usize).copied();
            }
            SurveyEvent::SurveyResponseRecorded(r) => {
                row.state = if r.complete { "COMPLETED" } else { "PARTIAL" }.into();
                row.responded_at = Some(r.at);
                row.complete = r.complete;
                row.response_count += 1;
                row.response_channel = r.channel.map(|c| c.as_str().to_string());
                if r.complete {
                    row.next_reminder_at = None;
                }
            }
            SurveyEvent::SurveyExpired(x) => {
                if row.state != "PARTIAL" {
                    row.state = "EXPIRED".into();
                }
                row.expired_at = Some(x.at);
                row.next_reminder_at = None;
            }
            SurveyEvent::SurveyFollowUpOpened(f) => {
                row.follow_up =
                    Some(serde_json::to_value(f).map_err(|err| ProjectionError::Poison(format!("follow-up: {err}")))?);
                row.follow_up_state = "OPEN".into();
                row.follow_up_due_at = Some(f.due_at);
                row.follow_up_department = f.department.as_ref().map(|d| d.as_str().to_string());
                row.follow_up_assignee = f.assignee.as_ref().map(|a| a.id.as_str().to_string());
                row.follow_up_request_id = f.request_id;
            }
            SurveyEvent::SurveyFollowUpCompleted(d) => {
                row.follow_up_done =
                    Some(serde_json::to_value(d).map_err(|err| ProjectionError::Poison(format!("follow-up: {err}")))?);
                row.follow_up_state = "DONE".into();
            }
        }
        row.version = e.stream_version;
        row.last_position = e.global_position;
        self.changed_surveys.insert(id);
        Ok(())
    }

    fn fold_monitor(&mut self, event: &SatisfactionMonitorEvent) {
        match event {
            SatisfactionMonitorEvent::SatisfactionPeriodReviewed(r) => {
                self.reviews.entry((r.rule_id, r.label.as_str().to_string())).or_insert_with(|| ReviewRow {
                    rule_id: r.rule_id,
                    label: r.label.as_str().to_string(),
                    starts_at: r.starts_at,
                    ends_at: r.ends_at,
                    groups: r.groups as i32,
                    alerts: r.alerts as i32,
                    at: r.at,
                });
            }
            SatisfactionMonitorEvent::SatisfactionAlertRaised(a) => {
                let department = a.drop.department.as_ref().map(|d| d.as_str()).unwrap_or("").to_string();
                self.alerts.entry((a.rule_id, a.label.as_str().to_string(), department.clone())).or_insert_with(|| {
                    AlertRow {
                        rule_id: a.rule_id,
                        label: a.label.as_str().to_string(),
                        department,
                        index_kind: a.index.as_str(),
                        period: a.period.as_str(),
                        previous_hundredths: a.drop.previous_hundredths,
                        current_hundredths: a.drop.current_hundredths,
                        previous_responses: a.drop.previous_responses as i32,
                        current_responses: a.drop.current_responses as i32,
                        raised_at: a.at,
                    }
                });
            }
        }
    }
}

/// Applies a run of events: the surveys and templates it touches are read in one query
/// each, every event is folded onto them in memory with [`Rows::fold`], and the changed rows
/// are written back with one statement per table.
pub(super) async fn apply_many(conn: &mut PgConnection, events: &[&RecordedEvent]) -> Result<(), ProjectionError> {
    let decoded: Vec<Decoded> = events.iter().map(|e| decode(e)).collect::<Result<_, _>>()?;
    let mut survey_ids = Vec::new();
    let mut template_ids = (Vec::new(), Vec::new());
    for (e, d) in events.iter().zip(&decoded) {
        match d {
            Decoded::Survey(_) => survey_ids.push(e.stream_id),
            Decoded::Template(SurveyTemplateEvent::SurveyTemplateDefined(t)) => {
                template_ids.0.push(t.template_id);
                template_ids.1.push(t.version as i32);
            }
            Decoded::Template(SurveyTemplateEvent::SurveyTemplatePublished(t)) => {
                template_ids.0.push(t.template_id);
                template_ids.1.push(t.version as i32);
            }
            Decoded::Monitor(_) | Decoded::Other => {}
        }
    }
    let mut rows = Rows::default();
    if !survey_ids.is_empty() {
        survey_ids.sort_unstable();
        survey_ids.dedup();
        let stored: Vec<Json<SurveyRow>> = sqlx::query_scalar(
            "SELECT to_jsonb(s) FROM surveys s WHERE survey_id = ANY($1) ORDER BY survey_id FOR UPDATE",
        )
        .bind(&survey_ids)
        .fetch_all(&mut *conn)
        .await?;
        rows.surveys = stored.into_iter().map(|Json(s)| (s.survey_id, s)).collect();
    }
    if !template_ids.0.is_empty() {
        let stored: Vec<Json<TemplateRow>> = sqlx::query_scalar(
            "SELECT to_jsonb(t) FROM templates t JOIN unnest($1::uuid[], $2::int[]) AS k(template_id, version) \
             USING (template_id, version) ORDER BY template_id, version FOR UPDATE OF t",
        )
        .bind(&template_ids.0)
        .bind(&template_ids.1)
        .fetch_all(&mut *conn)
        .await?;
        rows.templates = stored.into_iter().map(|Json(t)| ((t.template_id, t.version), t)).collect();
    }
    for (e, d) in events.iter().zip(&decoded) {
        rows.fold(e, d)?;
    }
    rows.write_changes(conn).await
}

impl Rows {
    /// A batch's changes: changed rows upserted, replaced answers and items deleted and
    /// inserted, new reviews and alerts inserted.
    async fn write_changes(&self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        let surveys: Vec<&SurveyRow> = self.changed_surveys.iter().filter_map(|id| self.surveys.get(id)).collect();
        CopyRows::new("surveys")
            .upsert(
                conn,
                surveys.into_iter(),
                "ON CONFLICT (survey_id) DO UPDATE SET reminders_sent = EXCLUDED.reminders_sent, \
               next_reminder_at = EXCLUDED.next_reminder_at, state = EXCLUDED.state, \
               responded_at = EXCLUDED.responded_at, complete = EXCLUDED.complete, \
               response_count = EXCLUDED.response_count, response_channel = EXCLUDED.response_channel, \
               expired_at = EXCLUDED.expired_at, follow_up = EXCLUDED.follow_up, \
               follow_up_state = EXCLUDED.follow_up_state, follow_up_due_at = EXCLUDED.follow_up_due_at, \
               follow_up_department = EXCLUDED.follow_up_department, \
               follow_up_assignee = EXCLUDED.follow_up_assignee, \
               follow_up_request_id = EXCLUDED.follow_up_request_id, follow_up_done = EXCLUDED.follow_up_done, \
               version = EXCLUDED.version, last_position = EXCLUDED.last_position",
            )
            .await?;
        if !self.answers.is_empty() {
            let ids: Vec<Uuid> = self.answers.keys().copied().collect();
            sqlx::query("DELETE FROM answers WHERE survey_id = ANY($1)").bind(&ids).execute(&mut *conn).await?;
            CopyRows::new("answers").upsert(conn, self.answers.values().flatten(), "").await?;
        }
        let templates: Vec<&TemplateRow> =
            self.changed_templates.iter().filter_map(|k| self.templates.get(k)).collect();
        CopyRows::new("templates")
            .upsert(
                conn,
                templates.into_iter(),
                "ON CONFLICT (template_id, version) DO UPDATE SET name = EXCLUDED.name, \
               audience = EXCLUDED.audience, published = EXCLUDED.published, content = EXCLUDED.content, \
               defined_at = EXCLUDED.defined_at",
            )
            .await?;
        if !self.items.is_empty() {
            let (ids, versions): (Vec<Uuid>, Vec<i32>) = self.items.keys().copied().unzip();
            sqlx::query(
                "DELETE FROM template_items i USING unnest($1::uuid[], $2::int[]) AS k(template_id, version) \
                 WHERE i.template_id = k.template_id AND i.version = k.version",
            )
            .bind(&ids)
            .bind(&versions)
            .execute(&mut *conn)
            .await?;
            CopyRows::new("template_items").upsert(conn, self.items.values().flatten(), "").await?;
        }
        CopyRows::new("reviews").upsert(conn, self.reviews.values(), "ON CONFLICT DO NOTHING").await?;
        CopyRows::new("alerts").upsert(conn, self.alerts.values(), "ON CONFLICT DO NOTHING").await
    }
}

/// A rebuild's fold: every row in memory, written once with `COPY` at the end.
#[derive(Default)]
pub(super) struct BulkSatisfaction(Rows);

impl BulkFold for BulkSatisfaction {
    fn fold(&mut self, e: &RecordedEvent) -> Result<(), ProjectionError> {
        let decoded = decode(e)?;
        self.0.fold(e, &decoded)
    }

    fn write<'a>(&'a mut self, conn: &'a mut PgConnection) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let r = &self.0;
            CopyRows::new("surveys").write_all(conn, r.surveys.values()).await?;
            CopyRows::new("answers").write_all(conn, r.answers.values().flatten()).await?;
            CopyRows::new("templates").write_all(conn, r.templates.values()).await?;
            CopyRows::new("template_items").write_all(conn, r.items.values().flatten()).await?;
            CopyRows::new("reviews").write_all(conn, r.reviews.values()).await?;
            CopyRows::new("alerts").write_all(conn, r.alerts.values()).await
        })
    }
}

#[cfg(test)]
mod tests {
    //! The fold's rules, given events from the real command path on an in-memory store: no
    //! database, no broker.

    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;

    use kefu_app::{Actor, ActorKind, CommandMeta, CommandService, InMemoryEventStore, surveys::SurveyDraft};
    use kefu_domain::{
        customer::{CustomerCommand, examples as customers},
        survey::{SurveyCommand, examples as surveys},
        survey_template::{SurveyTemplateCommand, examples as templates},
        values::Label,
        vocab::{Channel, SurveyTrigger},
    };

    use super::*;

    fn meta() -> CommandMeta {
        CommandMeta::by(Actor {
            id: "sup.wang".into(),
            name: None,
            kind: ActorKind::User,
            roles: vec!["supervisor".into()],
        })
    }

    fn rows_of(store: &InMemoryEventStore) -> Rows {
        let mut rows = Rows::default();
        for e in store.all() {
            rows.fold(&e, &decode(&e).unwrap()).unwrap();
        }
        rows
    }

    async fn send(service: &CommandService, customer: Uuid) -> Uuid {
        let survey_id = Uuid::now_v7();
        let draft = SurveyDraft {
            survey_id: Some(survey_id),
            template_id: templates::TEMPLATE_ID,
            template_version: None,
            customer_id: customer,
            request_id: None,
            department: None,
            trigger: SurveyTrigger::Campaign,
            campaign: Some(Label::parse("campaign", "2026Q4").unwrap()),
            policy_id: None,
            channel: Some(Channel::Sms),
            expires_after_hours: 72,
            remind_after_hours: vec![24, 48],
            follow_up: None,
            require_consent: false,
        };
        service.send_survey(draft, meta()).await.unwrap();
        survey_id
    }

    #[tokio::test]
    async fn surveys_templates_and_answers_follow_their_events() {
        let store = Arc::new(InMemoryEventStore::new());
        let service = CommandService::new(store.clone());
        let (customer, register) = customers::register_person();
        service.customer(CustomerCommand::Register(register), meta()).await.unwrap();
        let template = templates::TEMPLATE_ID;
        let define = SurveyTemplateCommand::Define { template_id: template, content: templates::after_service() };
        service.survey_template(template, define, meta()).await.unwrap();

        // Defined, not yet published: the template and one item per question.
        let rows = rows_of(&store);
        let questions = templates::after_service().questions.len();
        assert!(!rows.templates[&(template, 1)].published);
        assert_eq!(rows.items[&(template, 1)].len(), questions);
        service.survey_template(template, SurveyTemplateCommand::Publish { version: 1 }, meta()).await.unwrap();
        assert!(rows_of(&store).templates[&(template, 1)].published);

        // Sent: the first reminder is next.
        let partial = send(&service, customer).await;
        let sent = rows_of(&store).surveys[&partial].clone();
        assert_eq!((sent.state.as_str(), sent.reminders.len(), sent.reminders_sent), ("SENT", 2, 0));
        assert_eq!(sent.next_reminder_at, Some(sent.reminders[0]));
        assert_eq!((sent.response_count, sent.follow_up_state.as_str(), sent.version), (0, "NONE", 1));

        // A partial response: its answers, reminders still due.
        let some: Vec<_> = surveys::happy().into_iter().take(3).collect();
        service.record_survey_response(partial, some, false, None, meta()).await.unwrap();
        let rows = rows_of(&store);
        let row = &rows.surveys[&partial];
        assert_eq!((row.state.as_str(), row.complete, row.response_count), ("PARTIAL", false, 1));
        assert_eq!(row.next_reminder_at, sent.next_reminder_at);
        assert!(row.responded_at.is_some());
        assert_eq!(rows.answers[&partial].len(), 3);

        // Expired by hand: a partial survey stays PARTIAL, nothing more is due.
        let expire = SurveyCommand::Expire { at: Utc::now(), reason: None, manual: true };
        service.survey(partial, expire, meta()).await.unwrap();
        let row = rows_of(&store).surveys[&partial].clone();
        assert_eq!((row.state.as_str(), row.next_reminder_at), ("PARTIAL", None));
        assert!(row.expired_at.is_some());
        assert_eq!(row.version, 3);

        // Another survey answered in full: COMPLETED, no reminder, every answer kept; an
        // unanswered one expires as EXPIRED.
        let complete = send(&service, customer).await;
        service.record_survey_response(complete, surveys::happy(), true, Some(Channel::Web), meta()).await.unwrap();
        let unanswered = send(&service, customer).await;
        let expire = SurveyCommand::Expire { at: Utc::now(), reason: None, manual: true };
        service.survey(unanswered, expire, meta()).await.unwrap();
        let rows = rows_of(&store);
        let row = &rows.surveys[&complete];
        assert_eq!((row.state.as_str(), row.complete, row.next_reminder_at), ("COMPLETED", true, None));
        assert_eq!(row.response_channel.as_deref(), Some("WEB"));
        assert_eq!(rows.answers[&complete].len(), surveys::happy().len());
        assert_eq!(rows.surveys[&unanswered].state, "EXPIRED");
        assert!(!rows.answers.contains_key(&unanswered));
    }

    #[tokio::test]
    async fn a_survey_sent_twice_is_refused() {
        let store = Arc::new(InMemoryEventStore::new());
        let service = CommandService::new(store.clone());
        let (customer, register) = customers::register_person();
        service.customer(CustomerCommand::Register(register), meta()).await.unwrap();
        let template = templates::TEMPLATE_ID;
        let define = SurveyTemplateCommand::Define { template_id: template, content: templates::after_service() };
        service.survey_template(template, define, meta()).await.unwrap();
        service.survey_template(template, SurveyTemplateCommand::Publish { version: 1 }, meta()).await.unwrap();
        send(&service, customer).await;
        let sent = store.all().into_iter().find(|e| e.stream_type == "survey").unwrap();
        let mut rows = rows_of(&store);
        let again = rows.fold(&sent, &decode(&sent).unwrap());
        assert!(matches!(again, Err(ProjectionError::Poison(m)) if m.contains("already sent")));
    }
}
