//! GraphQL enums mirroring the domain's vocabularies (the `remote` derive keeps them in step:
//! a value missing on either side does not compile).

use async_graphql::Enum;
use kefu_domain::vocab;

/// Who the customer is (内部客户: departments are customers of each other).
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "vocab::CustomerKind")]
pub enum CustomerKind {
    /// A private person.
    Person,
    /// A company, public body or other organisation.
    Organization,
    /// An internal department served by other departments.
    InternalDepartment,
}

/// Gender as the customer states it.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "vocab::Gender")]
pub enum Gender {
    /// Female.
    Female,
    /// Male.
    Male,
    /// Another gender.
    Other,
    /// Not disclosed.
    Undisclosed,
}

/// Contact channel (联系渠道).
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "vocab::Channel")]
pub enum Channel {
    /// 面对面
    FaceToFace,
    /// 电话
    Phone,
    /// 短信
    Sms,
    /// 邮件
    Email,
    /// Web form or self-service portal (网络).
    Web,
    /// Live chat (在线).
    WebChat,
    /// 微信
    Wechat,
    /// 社交媒体
    SocialMedia,
    /// 传真
    Fax,
    /// Letter.
    PostalMail,
    /// 走访: a visit by our staff.
    FieldVisit,
    /// 座谈会: a customer meeting.
    CustomerMeeting,
    /// Referred by a third party (a regulator, a partner).
    Referral,
}

/// Inbound or outbound (入站/出站).
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "vocab::Direction")]
pub enum Direction {
    /// The customer reached us.
    Inbound,
    /// We reached the customer.
    Outbound,
}

/// Who started the contact (客户发起/企业发起).
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "vocab::Initiator")]
pub enum Initiator {
    /// The customer.
    Customer,
    /// The company.
    Company,
}

/// Handled by a person or by self-service (人员/非人员).
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "vocab::ServiceMode")]
pub enum ServiceMode {
    /// A member of staff.
    Staff,
    /// Self-service (IVR, portal, bot).
    SelfService,
}

/// Industry (行业).
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "vocab::Industry")]
pub enum Industry {
    /// 制造业
    Manufacturing,
    /// 服务业
    Services,
    /// 政府部门
    Government,
    /// Finance.
    Finance,
    /// Retail.
    Retail,
    /// Telecommunications.
    Telecommunications,
    /// Energy.
    Energy,
    /// Healthcare.
    Healthcare,
    /// Education.
    Education,
    /// Logistics.
    Logistics,
    /// Anything else.
    Other,
}

/// Scale (规模).
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "vocab::Scale")]
pub enum Scale {
    /// 大型
    Large,
    /// 中型
    Medium,
    /// 小型
    Small,
    /// 个体工商户
    SoleProprietor,
}

/// Tenure (新客户/老客户/忠诚客户).
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "vocab::Tenure")]
pub enum Tenure {
    /// 新客户
    New,
    /// 老客户
    Established,
    /// 忠诚客户
    Loyal,
}

/// Value tier (重要客户/一般客户/潜在客户); service is differentiated by tier.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "vocab::ValueTier")]
pub enum ValueTier {
    /// 重要客户
    Important,
    /// 一般客户
    Ordinary,
    /// 潜在客户
    Potential,
}

/// Lifecycle segment (潜在/优势/睡眠/逃跑).
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "vocab::LifecycleSegment")]
pub enum LifecycleSegment {
    /// 潜在
    Potential,
    /// 优势
    Advantaged,
    /// 睡眠
    Dormant,
    /// 逃跑
    Fleeing,
}

/// What personal data may be used for (保密).
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "vocab::ConsentPurpose")]
pub enum ConsentPurpose {
    /// Handling the customer's own requests.
    Service,
    /// Satisfaction surveys and return visits.
    Surveys,
    /// Offers and campaigns.
    Marketing,
    /// Aggregate analysis.
    Analytics,
    /// Passing data to a third party.
    ThirdPartySharing,
}

/// Parses a stored short name (`PHONE`) into a GraphQL enum value.
pub fn from_short<R, G>(s: &str) -> Option<G>
where
    R: std::str::FromStr,
    G: From<R>,
{
    s.parse::<R>().ok().map(G::from)
}

/// What the customer asks for (咨询/投诉/建议/需求).
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "vocab::RequestType")]
pub enum RequestType {
    /// 咨询: a question.
    Inquiry,
    /// 投诉: a complaint.
    Complaint,
    /// 建议: a suggestion.
    Suggestion,
    /// 需求: a demand for something new.
    Demand,
}

/// How urgent a request is.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "vocab::Priority")]
pub enum Priority {
    /// Low.
    Low,
    /// Normal.
    Normal,
    /// High.
    High,
    /// Urgent.
    Urgent,
}

/// Where a request is in its lifecycle.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "vocab::RequestState")]
pub enum RequestState {
    /// Recorded; nobody has answered the customer yet.
    Filed,
    /// The customer was answered (first response).
    Acknowledged,
    /// Someone is working on it.
    InProgress,
    /// Waiting for the customer; SLA clocks are paused.
    AwaitingCustomer,
    /// Solved; waiting for the return visit (回访).
    Resolved,
    /// Done (结案). May be reopened.
    Closed,
    /// Withdrawn by the customer. Final.
    Withdrawn,
    /// A duplicate merged into another request. Final.
    Merged,
}

/// What an SLA target measures.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "vocab::SlaMetric")]
pub enum SlaMetric {
    /// From filing to the first answer to the customer.
    FirstResponse,
    /// From the customer's return (resume, reopen) to the next answer.
    NextResponse,
    /// From filing to staff arriving on site.
    OnSite,
    /// From filing to the first resolution.
    Resolution,
    /// Complaints: from filing to reporting upward (the first escalation).
    ReportUpward,
    /// A callback promised to the customer.
    Callback,
}

/// How an SLA clock counts time.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "vocab::ClockKind")]
pub enum ClockKind {
    /// Every hour counts (24×7).
    Calendar,
    /// Only working time of a business calendar counts.
    Business,
}

/// Why a request was closed.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "vocab::CloseReason")]
pub enum CloseReason {
    /// The customer confirmed satisfaction at the return visit.
    ConfirmedByCustomer,
    /// The customer could not be reached for the return visit.
    CustomerUnreachable,
    /// Closed by a supervisor without a return visit.
    Administrative,
    /// Closed in the source system of an import.
    ClosedAtSource,
}

/// Kind of make-good (补偿性服务).
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "vocab::CompensationKind")]
pub enum CompensationKind {
    /// Money (refund, credit, payment).
    Monetary,
    /// A service or goods.
    NonMonetary,
}

/// How a survey question is answered.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "vocab::QuestionKind")]
pub enum QuestionKind {
    /// 1–5: 非常不满意, 不满意, 一般, 比较满意, 非常满意.
    #[graphql(name = "LIKERT_5")]
    Likert5,
    /// 0–10 likelihood to recommend (NPS).
    #[graphql(name = "NPS_0_10")]
    Nps0To10,
    /// 1–7 effort: 1 very hard … 7 very easy (CES).
    #[graphql(name = "CES_1_7")]
    Ces1To7,
    /// Yes (1) or no (0).
    YesNo,
    /// Free text.
    FreeText,
}

/// Who answers a survey; their indices are never mixed.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[graphql(remote = "vocab::SurveyAudience")]
pub enum SurveyAudience {
    /// Outside customers.
    #[default]
    External,
    /// Internal departments evaluating the departments that serve them (内部客户).
    Internal,
}

/// What a second complete response to the same survey does.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[graphql(remote = "vocab::ResubmissionRule")]
pub enum ResubmissionRule {
    /// It is refused.
    #[default]
    Reject,
    /// It replaces the first, which no longer counts.
    Supersede,
}

/// Why a survey was sent.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "vocab::SurveyTrigger")]
pub enum SurveyTrigger {
    /// Its request was resolved.
    OnResolved,
    /// Its request was closed.
    OnClosed,
    /// A campaign to a customer segment.
    Campaign,
    /// Sent by hand.
    Manual,
}

/// How a dissatisfied answer is followed up.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[graphql(remote = "vocab::FollowUpKind")]
pub enum FollowUpKind {
    /// A return-visit task for the agent and department who served.
    #[default]
    ReturnVisitTask,
    /// A new service request linked to the original and the survey.
    ServiceRequest,
}

/// A satisfaction index.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "vocab::SatisfactionIndexKind")]
pub enum SatisfactionIndexKind {
    /// Share of 4–5 answers to the overall-satisfaction questions, percent.
    Csat,
    /// Share of 4–5 among all 1–5 perception answers, percent.
    TopTwoBox,
    /// Promoters minus detractors, −100 to 100.
    Nps,
    /// Mean effort, 1–7.
    Ces,
    /// The indicator tree's weighted index, 0–100.
    Composite,
}

/// A review period.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "vocab::ReviewPeriod")]
pub enum ReviewPeriod {
    /// An ISO week.
    Week,
    /// A calendar month.
    Month,
}
