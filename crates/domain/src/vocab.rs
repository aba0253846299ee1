//! The closed vocabularies of the customer archive and of interactions (DOMAIN.md).
//! Each one is mirrored by an enum of the same name in `proto/kefu/v1/common.proto`.

use crate::wire_enum;

wire_enum! {
    /// Who the customer is: an outside person or organisation, or one of our own departments
    /// (内部客户 — departments are customers of each other).
    pub enum CustomerKind: "CUSTOMER_KIND" {
        /// A private person.
        Person = "PERSON",
        /// A company, public body or other organisation.
        Organization = "ORGANIZATION",
        /// An internal department served by other departments.
        InternalDepartment = "INTERNAL_DEPARTMENT",
    }
}

wire_enum! {
    /// Gender as the customer states it.
    pub enum Gender: "GENDER" {
        Female = "FEMALE",
        Male = "MALE",
        Other = "OTHER",
        Undisclosed = "UNDISCLOSED",
    }
}

wire_enum! {
    /// Contact channel (联系渠道).
    pub enum Channel: "CHANNEL" {
        /// 面对面
        FaceToFace = "FACE_TO_FACE",
        /// 电话
        Phone = "PHONE",
        /// 短信
        Sms = "SMS",
        /// 邮件
        Email = "EMAIL",
        /// Web form or self-service portal (网络).
        Web = "WEB",
        /// Live chat (在线).
        WebChat = "WEB_CHAT",
        /// 微信
        Wechat = "WECHAT",
        /// 社交媒体
        SocialMedia = "SOCIAL_MEDIA",
        /// 传真
        Fax = "FAX",
        /// Letter.
        PostalMail = "POSTAL_MAIL",
        /// 走访 — a visit by our staff.
        FieldVisit = "FIELD_VISIT",
        /// 座谈会 — a customer meeting.
        CustomerMeeting = "CUSTOMER_MEETING",
        /// Referred by a third party (a regulator, a partner).
        Referral = "REFERRAL",
    }
}

wire_enum! {
    /// 入站/出站.
    pub enum Direction: "DIRECTION" {
        Inbound = "INBOUND",
        Outbound = "OUTBOUND",
    }
}

wire_enum! {
    /// Who started the contact (客户发起/企业发起).
    pub enum Initiator: "INITIATOR" {
        Customer = "CUSTOMER",
        Company = "COMPANY",
    }
}

wire_enum! {
    /// Handled by a person or by self-service (人员/非人员).
    pub enum ServiceMode: "SERVICE_MODE" {
        Staff = "STAFF",
        SelfService = "SELF_SERVICE",
    }
}

wire_enum! {
    /// 行业.
    pub enum Industry: "INDUSTRY" {
        /// 制造业
        Manufacturing = "MANUFACTURING",
        /// 服务业
        Services = "SERVICES",
        /// 政府部门
        Government = "GOVERNMENT",
        Finance = "FINANCE",
        Retail = "RETAIL",
        Telecommunications = "TELECOMMUNICATIONS",
        Energy = "ENERGY",
        Healthcare = "HEALTHCARE",
        Education = "EDUCATION",
        Logistics = "LOGISTICS",
        Other = "OTHER",
    }
}

wire_enum! {
    /// 规模: 大型/中型/小型/个体工商户.
    pub enum Scale: "SCALE" {
        Large = "LARGE",
        Medium = "MEDIUM",
        Small = "SMALL",
        /// 个体工商户
        SoleProprietor = "SOLE_PROPRIETOR",
    }
}

wire_enum! {
    /// 新客户/老客户/忠诚客户.
    pub enum Tenure: "TENURE" {
        New = "NEW",
        Established = "ESTABLISHED",
        Loyal = "LOYAL",
    }
}

wire_enum! {
    /// 重要客户/一般客户/潜在客户. Service is differentiated by tier.
    pub enum ValueTier: "VALUE_TIER" {
        Important = "IMPORTANT",
        Ordinary = "ORDINARY",
        Potential = "POTENTIAL",
    }
}

wire_enum! {
    /// 潜在/优势/睡眠/逃跑.
    pub enum LifecycleSegment: "LIFECYCLE_SEGMENT" {
        Potential = "POTENTIAL",
        Advantaged = "ADVANTAGED",
        Dormant = "DORMANT",
        Fleeing = "FLEEING",
    }
}

wire_enum! {
    /// What personal data may be used for (collection states its purpose — 保密).
    pub enum ConsentPurpose: "CONSENT_PURPOSE" {
        /// Handling the customer's own requests.
        Service = "SERVICE",
        /// Satisfaction surveys and return visits.
        Surveys = "SURVEYS",
        /// Offers and campaigns.
        Marketing = "MARKETING",
        /// Aggregate analysis.
        Analytics = "ANALYTICS",
        /// Passing data to a third party.
        ThirdPartySharing = "THIRD_PARTY_SHARING",
    }
}

wire_enum! {
    /// Profile fields that a profile update can clear.
    pub enum ProfileField: "PROFILE_FIELD" {
        Gender = "GENDER",
        BirthDate = "BIRTH_DATE",
        Phone = "PHONE",
        BackupPhone = "BACKUP_PHONE",
        Email = "EMAIL",
        Address = "ADDRESS",
        KeyContacts = "KEY_CONTACTS",
        Needs = "NEEDS",
        Preferences = "PREFERENCES",
        ExternalRef = "EXTERNAL_REF",
    }
}

wire_enum! {
    /// What the customer asks for (咨询/投诉/建议/需求).
    pub enum RequestType: "REQUEST_TYPE" {
        /// 咨询: a question.
        Inquiry = "INQUIRY",
        /// 投诉: a complaint.
        Complaint = "COMPLAINT",
        /// 建议: a suggestion.
        Suggestion = "SUGGESTION",
        /// 需求: a demand for something new.
        Demand = "DEMAND",
    }
}

wire_enum! {
    /// How urgent a request is.
    pub enum Priority: "PRIORITY" {
        Low = "LOW",
        Normal = "NORMAL",
        High = "HIGH",
        Urgent = "URGENT",
    }
}

wire_enum! {
    /// Where a request is in its lifecycle.
    pub enum RequestState: "REQUEST_STATE" {
        /// Recorded; nobody has answered the customer yet.
        Filed = "FILED",
        /// The customer was answered (first response).
        Acknowledged = "ACKNOWLEDGED",
        /// Someone is working on it.
        InProgress = "IN_PROGRESS",
        /// Waiting for the customer; SLA clocks are paused.
        AwaitingCustomer = "AWAITING_CUSTOMER",
        /// Solved; waiting for the return visit (回访).
        Resolved = "RESOLVED",
        /// Done (结案). May be reopened.
        Closed = "CLOSED",
        /// Withdrawn or cancelled by the customer. Final.
        Withdrawn = "WITHDRAWN",
        /// A duplicate merged into another request. Final.
        Merged = "MERGED",
    }
}

wire_enum! {
    /// What an SLA target measures.
    pub enum SlaMetric: "SLA_METRIC" {
        /// From filing to the first answer to the customer.
        FirstResponse = "FIRST_RESPONSE",
        /// From the customer's return (resume, reopen) to the next answer.
        NextResponse = "NEXT_RESPONSE",
        /// From filing to staff arriving on site (only when on-site support is required).
        OnSite = "ON_SITE",
        /// From filing to the first resolution.
        Resolution = "RESOLUTION",
        /// Complaints only: from filing to reporting upward (the first escalation), 3 calendar days by default.
        ReportUpward = "REPORT_UPWARD",
        /// A callback promised to the customer (承诺回复时间); its deadline is the promised time.
        Callback = "CALLBACK",
    }
}

wire_enum! {
    /// How an SLA clock counts time.
    pub enum ClockKind: "CLOCK_KIND" {
        /// Every hour counts (24×7).
        Calendar = "CALENDAR",
        /// Only working time of a business calendar counts.
        Business = "BUSINESS",
    }
}

wire_enum! {
    /// Why a request was closed.
    pub enum CloseReason: "CLOSE_REASON" {
        /// The customer confirmed satisfaction at the return visit.
        ConfirmedByCustomer = "CONFIRMED_BY_CUSTOMER",
        /// The customer could not be reached for the return visit.
        CustomerUnreachable = "CUSTOMER_UNREACHABLE",
        /// Closed by a supervisor without a return visit.
        Administrative = "ADMINISTRATIVE",
        /// Closed in the source system of an import.
        ClosedAtSource = "CLOSED_AT_SOURCE",
    }
}

wire_enum! {
    /// Kind of make-good offered (补偿性服务).
    pub enum CompensationKind: "COMPENSATION_KIND" {
        /// Money (refund, credit, payment).
        Monetary = "MONETARY",
        /// A service or goods (free repair, upgrade, replacement).
        NonMonetary = "NON_MONETARY",
    }
}

wire_enum! {
    /// How a survey question is answered.
    pub enum QuestionKind: "QUESTION_KIND" {
        /// 1–5: 非常不满意, 不满意, 一般, 比较满意, 非常满意.
        Likert5 = "LIKERT_5",
        /// 0–10 likelihood to recommend (NPS).
        Nps0To10 = "NPS_0_10",
        /// 1–7 customer effort: 1 very hard … 7 very easy (CES).
        Ces1To7 = "CES_1_7",
        /// Yes or no.
        YesNo = "YES_NO",
        /// Free text.
        FreeText = "FREE_TEXT",
    }
}

wire_enum! {
    /// Who answers a survey: customers, or departments evaluating the departments that serve
    /// them (内部客户). Their indices are never mixed.
    pub enum SurveyAudience: "SURVEY_AUDIENCE" {
        /// Outside customers.
        External = "EXTERNAL",
        /// Internal departments.
        Internal = "INTERNAL",
    }
}

wire_enum! {
    /// What a second complete response to the same survey does.
    pub enum ResubmissionRule: "RESUBMISSION_RULE" {
        /// It is refused.
        Reject = "REJECT",
        /// It replaces the first (which then no longer counts).
        Supersede = "SUPERSEDE",
    }
}

wire_enum! {
    /// Why a survey was sent.
    pub enum SurveyTrigger: "SURVEY_TRIGGER" {
        /// Its request was resolved (服务完成后).
        OnResolved = "ON_RESOLVED",
        /// Its request was closed.
        OnClosed = "ON_CLOSED",
        /// A campaign to a customer segment (periodic survey).
        Campaign = "CAMPAIGN",
        /// Sent by hand.
        Manual = "MANUAL",
    }
}

wire_enum! {
    /// How a dissatisfied answer is followed up.
    pub enum FollowUpKind: "FOLLOW_UP_KIND" {
        /// A return-visit task for the agent and department of the original request.
        ReturnVisitTask = "RETURN_VISIT_TASK",
        /// A new service request linked to the original and the survey.
        ServiceRequest = "SERVICE_REQUEST",
    }
}

wire_enum! {
    /// A satisfaction index (exact definitions in docs/satisfaction.md).
    pub enum SatisfactionIndexKind: "SATISFACTION_INDEX_KIND" {
        /// Share of 4–5 answers to the overall-satisfaction questions, in percent.
        Csat = "CSAT",
        /// Share of 4–5 among all 1–5 perception answers, in percent.
        TopTwoBox = "TOP_TWO_BOX",
        /// Promoters minus detractors, −100 to 100.
        Nps = "NPS",
        /// Mean effort score, 1–7.
        Ces = "CES",
        /// The indicator tree's weighted index, 0–100.
        Composite = "COMPOSITE",
    }
}

wire_enum! {
    /// A reporting period.
    pub enum ReviewPeriod: "REVIEW_PERIOD" {
        /// An ISO week.
        Week = "WEEK",
        /// A calendar month.
        Month = "MONTH",
    }
}

/// Every vocabulary's protobuf enum name and wire values, for the contract check against
/// `proto/`. A vocabulary that appears in an event must be listed here.
pub fn all_vocabularies() -> Vec<(&'static str, Vec<&'static str>)> {
    macro_rules! list {
        ($($t:ty),+ $(,)?) => {
            vec![$((<$t>::NAME, <$t>::ALL.iter().map(|v| v.wire_name()).collect())),+]
        };
    }
    list!(
        CustomerKind,
        Gender,
        Channel,
        Direction,
        Initiator,
        ServiceMode,
        Industry,
        Scale,
        Tenure,
        ValueTier,
        LifecycleSegment,
        ConsentPurpose,
        ProfileField,
        RequestType,
        Priority,
        RequestState,
        SlaMetric,
        ClockKind,
        CloseReason,
        CompensationKind,
        QuestionKind,
        SurveyAudience,
        ResubmissionRule,
        SurveyTrigger,
        FollowUpKind,
        SatisfactionIndexKind,
        ReviewPeriod,
    )
}
