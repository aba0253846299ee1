//! The write path of service requests: what a handler loads (on the write side, never from a
//! read model) before the aggregate decides — the customer, the service configuration, the
//! business calendar — and the merge, which changes two requests in one transaction.

use kefu_domain::{
    Aggregate, DomainError, DomainEvent,
    business_calendar::{BusinessCalendarCommand, BusinessCalendarState, DefineBusinessCalendar},
    service_config::{SERVICE_CONFIGURATION_ID, ServiceConfigCommand, ServiceConfiguration},
    service_request::{OpenServiceRequest, ServiceRequest, ServiceRequestCommand},
    sla::CalendarDefinition,
    values::{Category, Label, StaffRef, Subject, Text},
    vocab::{Channel, ClockKind, Priority, RequestType},
};
use uuid::Uuid;

use crate::{
    AppError, CommandMeta, CommandService, Read,
    commands::Failure,
    store::{AppendOutcome, AppendRequest, CommandRecord, NewEvent, StoreError, StreamAppend},
};

/// What a person files; the service adds the customer's tier, the SLA terms and the time.
#[derive(Debug, Clone)]
pub struct RequestDraft {
    /// New request's id.
    pub request_id: Uuid,
    /// The customer.
    pub customer_id: Uuid,
    /// Type.
    pub request_type: RequestType,
    /// Category.
    pub category: Category,
    /// Priority.
    pub priority: Priority,
    /// Channel.
    pub channel: Channel,
    /// Subject.
    pub subject: Subject,
    /// Details.
    pub description: Option<Text>,
    /// First taker (the acting user when absent).
    pub taken_by: Option<StaffRef>,
    /// Responsible department.
    pub department: Option<Label>,
    /// On-site support required.
    pub on_site_required: bool,
    /// Id in another system.
    pub external_ref: Option<Label>,
    /// Tags.
    pub tags: Vec<Label>,
    /// Opened by kefu as a survey follow-up.
    pub origin: Option<kefu_domain::service_request::RequestOrigin>,
}

fn events_of<A: Aggregate>(events: &[A::Event], command_id: Uuid, offset: usize) -> Result<Vec<NewEvent>, AppError> {
    events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let (event_type, payload) =
                e.to_payload().map_err(|err| AppError::Internal(format!("event does not serialise: {err}")))?;
            Ok(NewEvent {
                event_id: Uuid::new_v5(&command_id, format!("event-{}", offset + i).as_bytes()),
                event_type: event_type.to_string(),
                schema_version: e.schema_version(),
                payload,
            })
        })
        .collect()
}

impl CommandService {
    /// The service configuration (policies, ladder, root causes).
    pub async fn configuration(&self) -> Result<ServiceConfiguration, AppError> {
        Ok(self.load::<ServiceConfiguration>(SERVICE_CONFIGURATION_ID).await?.0)
    }

    /// A business calendar's definition, if defined.
    pub async fn calendar(&self, calendar_id: Uuid) -> Result<Option<CalendarDefinition>, AppError> {
        let (state, _, _) = self.load::<BusinessCalendarState>(calendar_id).await?;
        Ok(state.defined.map(|d| d.definition))
    }

    /// Changes the service configuration. A business-time policy must name a defined calendar.
    pub async fn configure(&self, command: ServiceConfigCommand, meta: CommandMeta) -> Result<AppendOutcome, AppError> {
        if let ServiceConfigCommand::DefineSlaPolicy(policy) = &command
            && policy.clock == ClockKind::Business
            && let Some(id) = policy.calendar_id
            && self.calendar(id).await?.is_none()
        {
            return Err(DomainError::NotFound { entity: "calendar", id: id.to_string() }.into());
        }
        self.execute::<ServiceConfiguration>(SERVICE_CONFIGURATION_ID, None, command, meta).await
    }

    /// Defines or redefines a business calendar.
    pub async fn define_calendar(
        &self,
        command: DefineBusinessCalendar,
        meta: CommandMeta,
    ) -> Result<AppendOutcome, AppError> {
        let id = command.calendar_id;
        self.execute::<BusinessCalendarState>(id, None, BusinessCalendarCommand::Define(command), meta).await
    }

    /// The configuration and, for a business-time clock, its calendar, as a decision reads
    /// them (from the cache unless `fresh`).
    async fn calendar_read(
        &self,
        terms_calendar: Option<Uuid>,
        clock: ClockKind,
        fresh: bool,
        reads: &mut Vec<Read>,
    ) -> Result<Option<CalendarDefinition>, AppError> {
        match (clock, terms_calendar) {
            (ClockKind::Business, Some(id)) => {
                let calendar = self.current::<BusinessCalendarState>(id, fresh).await?;
                reads.push(calendar.read(id));
                Ok(calendar.state.defined.as_ref().map(|d| d.definition.clone()))
            }
            _ => Ok(None),
        }
    }

    /// Files a request: the customer must exist; the SLA terms are the policy that matches.
    pub async fn open_request(&self, draft: RequestDraft, mut meta: CommandMeta) -> Result<AppendOutcome, AppError> {
        let taken_by = match &draft.taken_by {
            Some(s) => s.clone(),
            None => staff_of(&meta)?,
        };
        let at = self.business_time(&mut meta);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let fresh = attempt > 1;
            let customer = self.registered(draft.customer_id, fresh).await?;
            let tier = customer.state.classification.value_tier;
            let config = self.current::<ServiceConfiguration>(SERVICE_CONFIGURATION_ID, fresh).await?;
            let mut reads = vec![customer.read(draft.customer_id), config.read(SERVICE_CONFIGURATION_ID)];
            let terms = config.state.terms_for(draft.request_type, draft.priority, tier, &draft.category);
            let calendar = self.calendar_read(terms.calendar_id, terms.clock, fresh, &mut reads).await?;
            let draft = draft.clone();
            let command = OpenServiceRequest {
                request_id: draft.request_id,
                customer_id: draft.customer_id,
                customer_tier: tier,
                request_type: draft.request_type,
                category: draft.category,
                priority: draft.priority,
                channel: draft.channel,
                subject: draft.subject,
                description: draft.description,
                taken_by: taken_by.clone(),
                department: draft.department,
                on_site_required: draft.on_site_required,
                external_ref: draft.external_ref,
                tags: draft.tags,
                origin: draft.origin,
                at,
                terms,
                calendar,
            };
            let command = ServiceRequestCommand::Open(Box::new(command));
            match self
                .decide_and_append::<ServiceRequest>(
                    draft.request_id,
                    Some(draft.customer_id),
                    &command,
                    &meta,
                    &reads,
                    true,
                )
                .await
            {
                Err(Failure::StaleRead) if attempt < 10 => continue,
                other => return other.map_err(Failure::into_app),
            }
        }
    }

    /// Applies a command to a request, completing what the handler supplies: the business
    /// calendar for commands that start clocks, the escalation ladder, the root-cause check.
    /// `at` and `now` in the command are replaced by the command's business time.
    pub async fn request(
        &self,
        request_id: Uuid,
        command: ServiceRequestCommand,
        mut meta: CommandMeta,
    ) -> Result<AppendOutcome, AppError> {
        let time = self.business_time(&mut meta);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let fresh = attempt > 1;
            let state = self.current::<ServiceRequest>(request_id, fresh).await?;
            let Some(filed) = state.state.filed.clone() else {
                if !fresh {
                    continue;
                }
                return Err(DomainError::NotFound { entity: "serviceRequest", id: request_id.to_string() }.into());
            };
            let needs_config = matches!(
                command,
                ServiceRequestCommand::Escalate { .. }
                    | ServiceRequestCommand::Deescalate { .. }
                    | ServiceRequestCommand::CheckSla { .. }
                    | ServiceRequestCommand::Resolve { .. }
            );
            let mut reads = Vec::new();
            let config = if needs_config {
                let config = self.current::<ServiceConfiguration>(SERVICE_CONFIGURATION_ID, fresh).await?;
                reads.push(config.read(SERVICE_CONFIGURATION_ID));
                Some(config)
            } else {
                None
            };
            let levels = config.as_ref().map(|c| c.state.levels()).unwrap_or_default();
            let calendar = match command {
                ServiceRequestCommand::Resume { .. }
                | ServiceRequestCommand::RecordReturnVisit { .. }
                | ServiceRequestCommand::Reopen { .. } => {
                    self.calendar_read(filed.sla.calendar_id, filed.sla.clock, fresh, &mut reads).await?
                }
                _ => None,
            };
            let mut command = command.clone();
            use ServiceRequestCommand as C;
            match &mut command {
                C::Open(_) => {
                    return Err(
                        DomainError::AlreadyExists { entity: "serviceRequest", id: request_id.to_string() }.into()
                    );
                }
                C::Acknowledge { at, .. }
                | C::Assign { at, .. }
                | C::Transfer { at, .. }
                | C::CommunicatePlan { at, .. }
                | C::CommitCallback { at, .. }
                | C::AwaitCustomer { at, .. }
                | C::RecordOnSiteArrival { at, .. }
                | C::UpdateCustomer { at, .. }
                | C::Close { at, .. }
                | C::Withdraw { at, .. }
                | C::AbsorbDuplicate { at, .. }
                | C::MergeInto { at, .. } => *at = time,
                C::Resume { at, calendar: c, .. }
                | C::RecordReturnVisit { at, calendar: c, .. }
                | C::Reopen { at, calendar: c, .. } => {
                    *at = time;
                    *c = calendar;
                }
                C::Escalate { at, levels: l, .. } | C::Deescalate { at, levels: l, .. } => {
                    *at = time;
                    *l = levels;
                }
                C::CheckSla { now, levels: l } => {
                    *now = time;
                    *l = levels;
                }
                C::Resolve { at, root_cause, .. } => {
                    *at = time;
                    if let Some(config) = &config
                        && let Err(e) = config.state.check_root_cause(root_cause)
                    {
                        if !fresh {
                            continue;
                        }
                        return Err(e.into());
                    }
                }
            }
            match self
                .decide_and_append::<ServiceRequest>(
                    request_id,
                    Some(filed.customer_id),
                    &command,
                    &meta,
                    &reads,
                    false,
                )
                .await
            {
                Err(Failure::StaleRead) if attempt < 10 => continue,
                other => return other.map_err(Failure::into_app),
            }
        }
    }

    /// Merges a duplicate into a survivor, atomically: the survivor records the duplicate and
    /// its reporters, the duplicate points to the survivor and ends.
    pub async fn merge_requests(
        &self,
        survivor_id: Uuid,
        duplicate_id: Uuid,
        reason: Text,
        mut meta: CommandMeta,
    ) -> Result<AppendOutcome, AppError> {
        let at = self.business_time(&mut meta);
        let command_id = meta.command_id.unwrap_or_else(Uuid::now_v7);
        let payload = meta.fingerprint.clone().unwrap_or_else(
            || serde_json::json!({"Merge": {"survivorId": survivor_id, "duplicateId": duplicate_id, "reason": reason}}),
        );
        let record =
            CommandRecord { command_id, command_type: "service_request.Merge".into(), payload: payload.into() };
        if meta.command_id.is_some()
            && let Some(j) = self.store().find_command(command_id).await?
        {
            if j.command.payload == record.payload && j.stream_id == survivor_id {
                return Ok(AppendOutcome { deduplicated: true, ..j.outcome });
            }
            return Err(AppError::CommandIdReused { command_id, original_type: j.command.command_type });
        }
        for attempt in 1..=10 {
            let (survivor, survivor_version, _) = self.load::<ServiceRequest>(survivor_id).await?;
            let (duplicate, duplicate_version, _) = self.load::<ServiceRequest>(duplicate_id).await?;
            let (Some(s), Some(d)) = (survivor.filed.clone(), duplicate.filed.clone()) else {
                let missing = if survivor.filed.is_none() { survivor_id } else { duplicate_id };
                return Err(DomainError::NotFound { entity: "serviceRequest", id: missing.to_string() }.into());
            };
            if let Some(expected) = meta.expected_version
                && expected != survivor_version
            {
                return Err(AppError::Conflict {
                    stream_type: ServiceRequest::STREAM_TYPE.into(),
                    stream_id: survivor_id,
                    expected,
                    actual: survivor_version,
                });
            }
            let absorbed = survivor.decide(&ServiceRequestCommand::AbsorbDuplicate {
                at,
                duplicate_id,
                reporters: duplicate.reporters.clone(),
                duplicate_state: duplicate.state(),
                reason: reason.clone(),
            })?;
            let merged =
                duplicate.decide(&ServiceRequestCommand::MergeInto { at, survivor_id, reason: reason.clone() })?;
            let request = AppendRequest {
                stream_id: survivor_id,
                stream_type: ServiceRequest::STREAM_TYPE.into(),
                customer_id: Some(s.customer_id),
                expected_version: survivor_version,
                command: record.clone(),
                events: events_of::<ServiceRequest>(&absorbed, command_id, 0)?,
                occurred_at: at,
                actor: meta.actor.clone(),
                correlation_id: meta.correlation_id,
                causation_id: meta.causation_id.unwrap_or(command_id),
                also: vec![StreamAppend {
                    stream_id: duplicate_id,
                    stream_type: ServiceRequest::STREAM_TYPE.into(),
                    customer_id: Some(d.customer_id),
                    expected_version: duplicate_version,
                    events: events_of::<ServiceRequest>(&merged, command_id, absorbed.len())?,
                }],
            };
            let appended = self.store().append(request).await;
            // The merge bypasses the stream cache: forget both streams.
            self.forget(survivor_id);
            self.forget(duplicate_id);
            match appended {
                Ok(outcome) => return Ok(outcome),
                Err(StoreError::WrongExpectedVersion { .. }) if meta.expected_version.is_none() && attempt < 10 => {
                    continue;
                }
                Err(StoreError::WrongExpectedVersion { stream_id, expected, actual }) => {
                    return Err(AppError::Conflict {
                        stream_type: ServiceRequest::STREAM_TYPE.into(),
                        stream_id,
                        expected,
                        actual,
                    });
                }
                Err(other) => return Err(other.into()),
            }
        }
        Err(AppError::Unavailable("the requests kept changing during the merge; retry".into()))
    }
}

/// The acting user as a staff reference.
pub fn staff_of(meta: &CommandMeta) -> Result<StaffRef, AppError> {
    let id = kefu_domain::values::StaffId::parse("actor", &meta.actor.id)?;
    let name = meta.actor.name.as_deref().and_then(|n| kefu_domain::values::Name::parse("name", n).ok());
    Ok(StaffRef { id, name })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::{DateTime, Utc};
    use kefu_domain::{
        business_calendar::examples::beijing,
        customer::{ClassifyCustomer, CustomerCommand, examples},
        service_config::examples::important_complaints,
        service_request::examples::t,
        vocab::{RequestState, SlaMetric, ValueTier},
    };

    use super::*;
    use crate::{Actor, ActorKind, InMemoryEventStore};

    fn meta_at(at: &str) -> CommandMeta {
        let mut m = CommandMeta::by(Actor {
            id: "agent.chen".into(),
            name: Some("陈静".into()),
            kind: ActorKind::User,
            roles: vec!["agent".into()],
        });
        m.occurred_at = Some(t(at));
        m
    }

    fn service() -> CommandService {
        // A clock after every example time, so no business time is "in the future".
        CommandService::new(Arc::new(InMemoryEventStore::new())).with_clock(Arc::new(|| t("2030-01-01T00:00:00Z")))
    }

    fn draft(customer_id: Uuid, request_id: Uuid) -> RequestDraft {
        RequestDraft {
            request_id,
            customer_id,
            request_type: RequestType::Complaint,
            category: Category::parse("c", "Billing / Overcharge").unwrap(),
            priority: Priority::High,
            channel: Channel::Phone,
            subject: Subject::parse("s", "多收费").unwrap(),
            description: None,
            taken_by: None,
            department: None,
            on_site_required: false,
            external_ref: None,
            tags: vec![],
            origin: None,
        }
    }

    async fn registered(service: &CommandService) -> Uuid {
        let (id, cmd) = examples::register_person();
        service.customer(CustomerCommand::Register(cmd), meta_at("2024-09-01T00:00:00Z")).await.unwrap();
        id
    }

    async fn load(service: &CommandService, id: Uuid) -> ServiceRequest {
        service.load::<ServiceRequest>(id).await.unwrap().0
    }

    fn due(state: &ServiceRequest, metric: SlaMetric) -> Option<DateTime<Utc>> {
        state.clocks.iter().find(|c| c.metric == metric).and_then(|c| c.due_at)
    }

    #[tokio::test]
    async fn filing_needs_a_customer_and_takes_the_acting_user_as_owner() {
        let service = service();
        let err = service
            .open_request(draft(Uuid::now_v7(), Uuid::now_v7()), meta_at("2024-09-02T09:00:00Z"))
            .await
            .unwrap_err();
        assert!(matches!(err, AppError::Domain(DomainError::NotFound { entity: "customer", .. })));
        let customer = registered(&service).await;
        let id = Uuid::now_v7();
        service.open_request(draft(customer, id), meta_at("2024-09-02T09:00:00Z")).await.unwrap();
        let s = load(&service, id).await;
        assert_eq!(s.owner.as_ref().unwrap().id.as_str(), "agent.chen");
        assert_eq!(due(&s, SlaMetric::FirstResponse), Some(t("2024-09-02T11:00:00Z")));
    }

    #[tokio::test]
    async fn the_matching_policy_and_its_business_calendar_decide_the_deadlines() {
        let service = service();
        let customer = registered(&service).await;
        service
            .customer(
                CustomerCommand::Classify(ClassifyCustomer {
                    customer_id: customer,
                    value_tier: kefu_domain::Patch::Set(ValueTier::Important),
                    ..Default::default()
                }),
                meta_at("2024-09-01T00:00:00Z"),
            )
            .await
            .unwrap();
        let calendar = beijing();
        let policy = important_complaints(calendar.calendar_id);
        // The policy names a calendar that does not exist yet.
        let err = service
            .configure(ServiceConfigCommand::DefineSlaPolicy(policy.clone()), meta_at("2024-09-01T00:00:00Z"))
            .await
            .unwrap_err();
        assert!(matches!(err, AppError::Domain(DomainError::NotFound { entity: "calendar", .. })), "{err:?}");
        service.define_calendar(calendar, meta_at("2024-09-01T00:00:00Z")).await.unwrap();
        service
            .configure(ServiceConfigCommand::DefineSlaPolicy(policy), meta_at("2024-09-01T00:00:00Z"))
            .await
            .unwrap();
        let id = Uuid::now_v7();
        // Friday 2024-09-06 17:30 in Beijing; the policy gives 60 working minutes to respond.
        service.open_request(draft(customer, id), meta_at("2024-09-06T09:30:00Z")).await.unwrap();
        let s = load(&service, id).await;
        assert_eq!(s.filed.as_ref().unwrap().sla.policy_name.as_str(), "重要客户投诉 Important customers' complaints");
        assert_eq!(due(&s, SlaMetric::FirstResponse), Some(t("2024-09-09T01:30:00Z")), "Monday 09:30 Beijing");
    }

    #[tokio::test]
    async fn resolving_checks_the_root_cause_catalogue() {
        let service = service();
        let customer = registered(&service).await;
        let id = Uuid::now_v7();
        service.open_request(draft(customer, id), meta_at("2024-09-02T09:00:00Z")).await.unwrap();
        let resolve = |cause: &str| ServiceRequestCommand::Resolve {
            at: t("2000-01-01T00:00:00Z"),
            resolution: Text::parse("r", "退款").unwrap(),
            root_cause: Label::parse("c", cause).unwrap(),
            compensation: None,
        };
        let err = service.request(id, resolve("bad_luck"), meta_at("2024-09-02T10:00:00Z")).await.unwrap_err();
        assert!(
            matches!(err, AppError::Domain(DomainError::Invalid { ref field, .. }) if field == "rootCause"),
            "{err:?}"
        );
        service.request(id, resolve("billing_error"), meta_at("2024-09-02T10:00:00Z")).await.unwrap();
        let s = load(&service, id).await;
        assert_eq!(s.state(), RequestState::Resolved);
        assert_eq!(s.last_resolved_at, Some(t("2024-09-02T10:00:00Z")), "the command's time is the business time");
    }

    #[tokio::test]
    async fn a_merge_changes_both_requests_or_neither() {
        let service = service();
        let customer = registered(&service).await;
        let (survivor, duplicate) = (Uuid::now_v7(), Uuid::now_v7());
        service.open_request(draft(customer, survivor), meta_at("2024-09-02T09:00:00Z")).await.unwrap();
        service.open_request(draft(customer, duplicate), meta_at("2024-09-02T09:05:00Z")).await.unwrap();
        let reason = Text::parse("r", "同一问题").unwrap();
        let err = service
            .merge_requests(survivor, survivor, reason.clone(), meta_at("2024-09-02T10:00:00Z"))
            .await
            .unwrap_err();
        assert!(matches!(err, AppError::Domain(DomainError::Rejected { rule: "merge_into_itself", .. })));
        let outcome =
            service.merge_requests(survivor, duplicate, reason.clone(), meta_at("2024-09-02T10:00:00Z")).await.unwrap();
        assert_eq!(outcome.event_count, 2);
        assert_eq!(load(&service, duplicate).await.state(), RequestState::Merged);
        assert_eq!(load(&service, survivor).await.duplicates, vec![duplicate]);
        // Merging into a request that has ended is refused and changes nothing.
        let third = Uuid::now_v7();
        service.open_request(draft(customer, third), meta_at("2024-09-02T09:10:00Z")).await.unwrap();
        let before = service.store().load(third).await.unwrap().len();
        let err = service.merge_requests(duplicate, third, reason, meta_at("2024-09-02T10:10:00Z")).await.unwrap_err();
        assert!(matches!(err, AppError::Domain(DomainError::Rejected { rule: "survivor_ended", .. })), "{err:?}");
        assert_eq!(service.store().load(third).await.unwrap().len(), before);
    }

    #[tokio::test]
    async fn a_retry_with_the_same_input_is_recognised_although_the_server_time_differs() {
        let service = service();
        let customer = registered(&service).await;
        let id = Uuid::now_v7();
        let mut meta = meta_at("2024-09-02T09:00:00Z");
        meta.command_id = Some(Uuid::now_v7());
        meta.occurred_at = None;
        meta.fingerprint = Some(serde_json::json!({"input": {"subject": "多收费"}}));
        let first = service.open_request(draft(customer, id), meta.clone()).await.unwrap();
        let again = service.open_request(draft(customer, id), meta).await.unwrap();
        assert!(again.deduplicated);
        assert_eq!(again.last_position, first.last_position);
    }
}
