//! Survey templates (满意度调查问卷): versioned questionnaires whose questions are grouped
//! by dimension, optionally paired with expectation questions (gap model), and scored
//! through a weighted indicator tree of up to three levels (process → step → touchpoint) in
//! which every leaf maps to a responsible department (DOMAIN.md "Satisfaction").
//!
//! A template is drafted, then published; a published version never changes, and every
//! survey names the version it was sent with, so answers are always read against the
//! questions that were asked. Editing a published template drafts the next version.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    Aggregate, DomainError, event_family,
    values::{Label, Name, Text},
    vocab::{QuestionKind, ResubmissionRule, SurveyAudience},
};

/// The dimension whose 1–5 answers make CSAT.
pub const OVERALL_DIMENSION: &str = "overall";

/// A dimension questions are grouped by (服务态度, 服务效率 …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dimension {
    /// Stable code, e.g. `attitude`; `overall` is the overall satisfaction (CSAT).
    pub code: Label,
    /// Name for people.
    pub name: Name,
}

/// One question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Question {
    /// Stable code within the template, e.g. `q_attitude`.
    pub code: Label,
    /// The question as asked.
    pub text: Text,
    /// How it is answered.
    pub kind: QuestionKind,
    /// Its dimension (required for 1–5 questions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimension: Option<Label>,
    /// When set, this question asks what the customer *expected* of the named perception
    /// question (same dimension, both 1–5): satisfaction = perception − expectation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expectation_of: Option<Label>,
    /// Must be answered for a response to be complete.
    #[serde(default)]
    pub required: bool,
}

/// A node of the indicator tree (一级/二级/三级指标).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Indicator {
    /// Stable code.
    pub code: Label,
    /// Name for people, e.g. `售后服务 / 维修 / 交车`.
    pub name: Name,
    /// Its parent (none for a first-level indicator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Label>,
    /// Weight relative to its siblings (1–1000).
    pub weight: u32,
    /// Leaves: the question that scores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question: Option<Label>,
    /// Leaves: the department responsible for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<Label>,
}

/// The whole questionnaire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SurveyTemplateContent {
    /// Name, e.g. `投诉处理回访问卷`.
    pub name: Name,
    /// Customers or internal departments.
    pub audience: SurveyAudience,
    /// Dimensions.
    pub dimensions: Vec<Dimension>,
    /// Questions, in the order asked.
    pub questions: Vec<Question>,
    /// The indicator tree (empty: no composite index).
    #[serde(default)]
    pub indicators: Vec<Indicator>,
    /// What a second complete response does.
    pub resubmission: ResubmissionRule,
}

/// A leaf of the indicator tree with its effective weight.
#[derive(Debug, Clone, PartialEq)]
pub struct Leaf {
    /// The indicator.
    pub indicator: Label,
    /// Names from the first level down to the leaf, joined with " / ".
    pub path: String,
    /// The question scoring it.
    pub question: Label,
    /// The responsible department.
    pub department: Label,
    /// Product of the weights relative to siblings along the path; all leaves sum to 1.
    pub weight: f64,
}

/// The dimensions the seeds name (002): attitude, efficiency, quality, problem solving,
/// professional competence, convenience, the view of the company, and overall satisfaction.
pub fn default_dimensions() -> Vec<Dimension> {
    [
        ("attitude", "服务态度 Service attitude"),
        ("efficiency", "服务效率 Efficiency"),
        ("quality", "服务质量 Service quality"),
        ("problem_solving", "解决问题的能力 Problem-solving ability"),
        ("competence", "专业能力 Professional competence"),
        ("convenience", "服务流程的便捷性 Convenience of the process"),
        ("company", "对公司的整体评价 Overall view of the company"),
        (OVERALL_DIMENSION, "总体满意度 Overall satisfaction"),
    ]
    .into_iter()
    .map(|(c, n)| Dimension { code: Label::trusted(c), name: Name::trusted(n) })
    .collect()
}

fn check_code(field: &str, code: &Label) -> Result<(), DomainError> {
    let ok = code.as_str().chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c));
    if !ok {
        return Err(DomainError::invalid(field, format!("`{code}`: codes use a-z, 0-9, `_`, `.` and `-`")));
    }
    Ok(())
}

impl QuestionKind {
    /// The values an answer may take (None: free text).
    pub fn range(self) -> Option<(i32, i32)> {
        match self {
            QuestionKind::Likert5 => Some((1, 5)),
            QuestionKind::Nps0To10 => Some((0, 10)),
            QuestionKind::Ces1To7 => Some((1, 7)),
            QuestionKind::YesNo => Some((0, 1)),
            QuestionKind::FreeText => None,
        }
    }

    /// An answer as a score from 0 to 100 (the composite index's item score).
    pub fn score_percent(self, value: i32) -> Option<f64> {
        let (lo, hi) = self.range()?;
        Some(f64::from(value - lo) * 100.0 / f64::from(hi - lo))
    }
}

impl SurveyTemplateContent {
    /// A question by code.
    pub fn question(&self, code: &str) -> Option<&Question> {
        self.questions.iter().find(|q| q.code.as_str() == code)
    }

    /// Checks the template's own rules.
    pub fn validate(&self) -> Result<(), DomainError> {
        if self.dimensions.is_empty() {
            return Err(DomainError::invalid("dimensions", "a template needs at least one dimension"));
        }
        for (i, d) in self.dimensions.iter().enumerate() {
            check_code(&format!("dimensions[{i}].code"), &d.code)?;
            if self.dimensions[..i].iter().any(|o| o.code == d.code) {
                return Err(DomainError::invalid(
                    format!("dimensions[{i}].code"),
                    format!("`{}` appears twice", d.code),
                ));
            }
        }
        if self.questions.is_empty() || self.questions.len() > 100 {
            return Err(DomainError::invalid("questions", "a template has 1 to 100 questions"));
        }
        let mut expected: BTreeSet<&str> = BTreeSet::new();
        for (i, q) in self.questions.iter().enumerate() {
            let field = format!("questions[{i}]");
            check_code(&format!("{field}.code"), &q.code)?;
            if self.questions[..i].iter().any(|o| o.code == q.code) {
                return Err(DomainError::invalid(format!("{field}.code"), format!("`{}` appears twice", q.code)));
            }
            if let Some(d) = &q.dimension
                && !self.dimensions.iter().any(|x| x.code == *d)
            {
                return Err(DomainError::invalid(format!("{field}.dimension"), format!("`{d}` is not a dimension")));
            }
            if q.kind == QuestionKind::Likert5 && q.dimension.is_none() {
                return Err(DomainError::invalid(
                    format!("{field}.dimension"),
                    "a 1–5 question belongs to a dimension (its score is reported per dimension)",
                ));
            }
            if let Some(of) = &q.expectation_of {
                let Some(perception) = self.question(of.as_str()) else {
                    return Err(DomainError::invalid(
                        format!("{field}.expectationOf"),
                        format!("`{of}` is not a question of this template"),
                    ));
                };
                if q.kind != QuestionKind::Likert5 || perception.kind != QuestionKind::Likert5 {
                    return Err(DomainError::invalid(
                        format!("{field}.expectationOf"),
                        "expectation and perception questions are both 1–5 questions",
                    ));
                }
                if perception.expectation_of.is_some() || perception.code == q.code {
                    return Err(DomainError::invalid(
                        format!("{field}.expectationOf"),
                        format!("`{of}` is itself an expectation question"),
                    ));
                }
                if perception.dimension != q.dimension {
                    return Err(DomainError::invalid(
                        format!("{field}.expectationOf"),
                        "an expectation question is in the same dimension as its perception question",
                    ));
                }
                if !expected.insert(of.as_str()) {
                    return Err(DomainError::invalid(
                        format!("{field}.expectationOf"),
                        format!("`{of}` already has an expectation question"),
                    ));
                }
            }
        }
        self.leaves().map(|_| ())
    }

    /// The indicator tree's leaves with their effective weights (empty without a tree), or
    /// what is wrong with the tree.
    pub fn leaves(&self) -> Result<Vec<Leaf>, DomainError> {
        let nodes = &self.indicators;
        let mut by_code: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, n) in nodes.iter().enumerate() {
            let field = format!("indicators[{i}]");
            check_code(&format!("{field}.code"), &n.code)?;
            if by_code.insert(n.code.as_str(), i).is_some() {
                return Err(DomainError::invalid(format!("{field}.code"), format!("`{}` appears twice", n.code)));
            }
            if !(1..=1000).contains(&n.weight) {
                return Err(DomainError::invalid(format!("{field}.weight"), "weights are 1 to 1000"));
            }
        }
        // Depth of every node (parents must exist; no cycles; at most three levels).
        for (i, n) in nodes.iter().enumerate() {
            let field = format!("indicators[{i}]");
            let mut d = 1;
            let mut parent = n.parent.as_ref();
            while let Some(p) = parent {
                let Some(&pi) = by_code.get(p.as_str()) else {
                    return Err(DomainError::invalid(format!("{field}.parent"), format!("`{p}` is not an indicator")));
                };
                d += 1;
                if d > 3 {
                    return Err(DomainError::invalid(
                        format!("{field}.parent"),
                        "the indicator tree has at most three levels (process, step, touchpoint)",
                    ));
                }
                parent = nodes[pi].parent.as_ref();
            }
        }
        let has_children = |code: &Label| nodes.iter().any(|n| n.parent.as_ref() == Some(code));
        let mut scored: BTreeSet<&str> = BTreeSet::new();
        let mut leaves = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            let field = format!("indicators[{i}]");
            if has_children(&n.code) {
                if n.question.is_some() || n.department.is_some() {
                    return Err(DomainError::invalid(
                        format!("{field}.question"),
                        "only leaves have a question and a responsible department",
                    ));
                }
                continue;
            }
            let Some(question) = &n.question else {
                return Err(DomainError::invalid(format!("{field}.question"), "a leaf is scored by a question"));
            };
            let Some(department) = &n.department else {
                return Err(DomainError::invalid(
                    format!("{field}.department"),
                    "every leaf maps to a responsible department",
                ));
            };
            let Some(q) = self.question(question.as_str()) else {
                return Err(DomainError::invalid(
                    format!("{field}.question"),
                    format!("`{question}` is not a question of this template"),
                ));
            };
            if q.kind == QuestionKind::FreeText || q.expectation_of.is_some() {
                return Err(DomainError::invalid(
                    format!("{field}.question"),
                    format!("`{question}` is not scored (free text or an expectation question)"),
                ));
            }
            if !scored.insert(question.as_str()) {
                return Err(DomainError::invalid(
                    format!("{field}.question"),
                    format!("`{question}` already scores another indicator"),
                ));
            }
            // Effective weight: the share among siblings, multiplied up the path.
            let mut weight = 1.0;
            let mut names = Vec::new();
            let mut node = n;
            loop {
                let siblings: u32 = nodes.iter().filter(|s| s.parent == node.parent).map(|s| s.weight).sum();
                weight *= f64::from(node.weight) / f64::from(siblings);
                names.push(node.name.as_str());
                match &node.parent {
                    Some(p) => node = &nodes[by_code[p.as_str()]],
                    None => break,
                }
            }
            names.reverse();
            leaves.push(Leaf {
                indicator: n.code.clone(),
                path: names.join(" / "),
                question: question.clone(),
                department: department.clone(),
                weight,
            });
        }
        Ok(leaves)
    }
}

// ---------------------------------------------------------------------------------------------

/// Commands on a template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SurveyTemplateCommand {
    /// Draft a version: the first, a replacement of the current draft, or the next after a
    /// published one.
    Define {
        /// The template.
        template_id: Uuid,
        /// Its content.
        content: SurveyTemplateContent,
    },
    /// Publish the draft: surveys sent from now on use it.
    Publish {
        /// The version to publish (must be the draft).
        version: u32,
    },
}

/// A version was drafted (or its draft replaced).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SurveyTemplateDefined {
    /// The template.
    pub template_id: Uuid,
    /// The version drafted.
    pub version: u32,
    /// Its content.
    pub content: SurveyTemplateContent,
}

/// A version was published and is now the one sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SurveyTemplatePublished {
    /// The template.
    pub template_id: Uuid,
    /// The version.
    pub version: u32,
}

event_family! {
    /// Facts recorded on a template stream.
    pub enum SurveyTemplateEvent {
        SurveyTemplateDefined,
        SurveyTemplatePublished,
    }
}

/// A template and its versions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SurveyTemplate {
    /// Its id, once defined.
    pub template_id: Option<Uuid>,
    /// Every version.
    pub versions: BTreeMap<u32, SurveyTemplateContent>,
    /// Published versions.
    pub published: BTreeSet<u32>,
}

impl SurveyTemplate {
    /// The newest published version.
    pub fn current(&self) -> Option<(u32, &SurveyTemplateContent)> {
        self.published.iter().next_back().and_then(|v| self.versions.get(v).map(|c| (*v, c)))
    }

    /// A published version.
    pub fn published_version(&self, version: u32) -> Option<&SurveyTemplateContent> {
        self.published.contains(&version).then(|| self.versions.get(&version)).flatten()
    }

    /// The unpublished draft, if any.
    pub fn draft(&self) -> Option<(u32, &SurveyTemplateContent)> {
        self.versions.iter().next_back().filter(|(v, _)| !self.published.contains(v)).map(|(v, c)| (*v, c))
    }
}

impl Aggregate for SurveyTemplate {
    const STREAM_TYPE: &'static str = "survey_template";
    type Command = SurveyTemplateCommand;
    type Event = SurveyTemplateEvent;

    fn decide(&self, command: &SurveyTemplateCommand) -> Result<Vec<SurveyTemplateEvent>, DomainError> {
        match command {
            SurveyTemplateCommand::Define { template_id, content } => {
                content.validate()?;
                let version = match self.draft() {
                    Some((_, draft)) if draft == content => return Ok(vec![]),
                    Some((v, _)) => v,
                    None => self.versions.keys().next_back().map(|v| v + 1).unwrap_or(1),
                };
                if self.current().is_some_and(|(_, c)| c == content) && self.draft().is_none() {
                    return Ok(vec![]);
                }
                Ok(vec![SurveyTemplateDefined { template_id: *template_id, version, content: content.clone() }.into()])
            }
            SurveyTemplateCommand::Publish { version } => {
                let Some(template_id) = self.template_id else {
                    return Err(DomainError::NotFound { entity: "surveyTemplate", id: String::new() });
                };
                if self.published.contains(version) {
                    return Ok(vec![]);
                }
                match self.draft() {
                    Some((v, _)) if v == *version => {
                        Ok(vec![SurveyTemplatePublished { template_id, version: *version }.into()])
                    }
                    Some((v, _)) => Err(DomainError::rejected(
                        "not_the_draft",
                        format!("version {version} is not the draft; the draft is version {v}"),
                    )),
                    None => Err(DomainError::rejected(
                        "no_draft",
                        format!("version {version} does not exist; define a draft first"),
                    )),
                }
            }
        }
    }

    fn apply(&mut self, event: &SurveyTemplateEvent) {
        match event {
            SurveyTemplateEvent::SurveyTemplateDefined(e) => {
                self.template_id = Some(e.template_id);
                self.versions.insert(e.version, e.content.clone());
            }
            SurveyTemplateEvent::SurveyTemplatePublished(e) => {
                self.published.insert(e.version);
            }
        }
    }
}

/// Example values for tests, documentation and the event catalogue.
pub mod examples {
    use super::*;

    fn label(s: &'static str) -> Label {
        Label::trusted(s)
    }

    fn text(s: &str) -> Text {
        Text::parse("text", s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn question(code: &'static str, t: &str, kind: QuestionKind, dimension: Option<&'static str>) -> Question {
        Question {
            code: label(code),
            text: text(t),
            kind,
            dimension: dimension.map(label),
            expectation_of: None,
            required: true,
        }
    }

    /// The template id of the example.
    pub const TEMPLATE_ID: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0005_0001);

    /// A complaint-handling questionnaire: attitude (with its expectation), efficiency,
    /// problem solving, overall, NPS, effort and a comment; a two-level indicator tree.
    pub fn after_service() -> SurveyTemplateContent {
        let mut expectation =
            question("q_attitude_expected", "您期望的服务态度如何？", QuestionKind::Likert5, Some("attitude"));
        expectation.expectation_of = Some(label("q_attitude"));
        expectation.required = false;
        let mut comment = question("q_comment", "还有什么建议？", QuestionKind::FreeText, None);
        comment.required = false;
        SurveyTemplateContent {
            name: Name::trusted("投诉处理回访问卷 After-service survey"),
            audience: SurveyAudience::External,
            dimensions: default_dimensions(),
            questions: vec![
                question("q_attitude", "您对客服人员的服务态度满意吗？", QuestionKind::Likert5, Some("attitude")),
                expectation,
                question("q_speed", "您对处理速度满意吗？", QuestionKind::Likert5, Some("efficiency")),
                question("q_solved", "问题是否得到解决？", QuestionKind::YesNo, Some("problem_solving")),
                question("q_overall", "总体而言，您对本次服务满意吗？", QuestionKind::Likert5, Some(OVERALL_DIMENSION)),
                question("q_nps", "您向朋友推荐我们的可能性有多大？", QuestionKind::Nps0To10, Some("company")),
                question("q_effort", "办理这件事容易吗？", QuestionKind::Ces1To7, Some("convenience")),
                comment,
            ],
            indicators: vec![
                Indicator {
                    code: label("handling"),
                    name: Name::trusted("投诉处理 Complaint handling"),
                    parent: None,
                    weight: 3,
                    question: None,
                    department: None,
                },
                Indicator {
                    code: label("handling.attitude"),
                    name: Name::trusted("服务态度 Attitude"),
                    parent: Some(label("handling")),
                    weight: 1,
                    question: Some(label("q_attitude")),
                    department: Some(label("客服中心")),
                },
                Indicator {
                    code: label("handling.speed"),
                    name: Name::trusted("处理速度 Speed"),
                    parent: Some(label("handling")),
                    weight: 1,
                    question: Some(label("q_speed")),
                    department: Some(label("网络维护部")),
                },
                Indicator {
                    code: label("outcome"),
                    name: Name::trusted("问题解决 Outcome"),
                    parent: None,
                    weight: 1,
                    question: Some(label("q_solved")),
                    department: Some(label("网络维护部")),
                },
            ],
            resubmission: ResubmissionRule::Supersede,
        }
    }

    /// One example of every template event.
    pub fn all_events() -> Vec<SurveyTemplateEvent> {
        vec![
            SurveyTemplateDefined { template_id: TEMPLATE_ID, version: 1, content: after_service() }.into(),
            SurveyTemplatePublished { template_id: TEMPLATE_ID, version: 1 }.into(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::given;

    fn define(content: SurveyTemplateContent) -> SurveyTemplateCommand {
        SurveyTemplateCommand::Define { template_id: examples::TEMPLATE_ID, content }
    }

    #[test]
    fn leaf_weights_multiply_down_the_tree_and_sum_to_one() {
        let leaves = examples::after_service().leaves().unwrap();
        let w: Vec<(&str, f64)> = leaves.iter().map(|l| (l.indicator.as_str(), l.weight)).collect();
        // handling 3/4 split evenly between attitude and speed; outcome 1/4.
        assert_eq!(w, [("handling.attitude", 0.375), ("handling.speed", 0.375), ("outcome", 0.25)]);
        assert!((leaves.iter().map(|l| l.weight).sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(leaves[0].path, "投诉处理 Complaint handling / 服务态度 Attitude");
        assert_eq!(leaves[1].department.as_str(), "网络维护部");
    }

    #[test]
    fn scores_are_normalised_to_percent() {
        assert_eq!(QuestionKind::Likert5.score_percent(1), Some(0.0));
        assert_eq!(QuestionKind::Likert5.score_percent(4), Some(75.0));
        assert_eq!(QuestionKind::Nps0To10.score_percent(7), Some(70.0));
        assert_eq!(QuestionKind::Ces1To7.score_percent(7), Some(100.0));
        assert_eq!(QuestionKind::YesNo.score_percent(1), Some(100.0));
        assert_eq!(QuestionKind::FreeText.score_percent(3), None);
    }

    #[test]
    fn drafts_are_replaced_until_published_then_the_next_version_is_drafted() {
        let first = given::<SurveyTemplate>([]).when(define(examples::after_service())).then_count(1);
        let mut changed = examples::after_service();
        changed.name = Name::trusted("v1 again");
        let replaced = given::<SurveyTemplate>(first.clone()).when(define(changed.clone())).then_count(1);
        let SurveyTemplateEvent::SurveyTemplateDefined(e) = &replaced[0] else { panic!() };
        assert_eq!(e.version, 1, "an unpublished draft is replaced in place");
        let mut history = first.clone();
        history
            .extend(given::<SurveyTemplate>(first).when(SurveyTemplateCommand::Publish { version: 1 }).then_count(1));
        given::<SurveyTemplate>(history.clone()).when(define(examples::after_service())).then_nothing();
        let next = given::<SurveyTemplate>(history.clone()).when(define(changed)).then_count(1);
        let SurveyTemplateEvent::SurveyTemplateDefined(e) = &next[0] else { panic!() };
        assert_eq!(e.version, 2, "a published version never changes");
        given::<SurveyTemplate>(history.clone()).when(SurveyTemplateCommand::Publish { version: 1 }).then_nothing();
        given::<SurveyTemplate>(history).when(SurveyTemplateCommand::Publish { version: 2 }).then_rejected("no_draft");
    }

    #[test]
    fn templates_are_checked() {
        let bad = |f: fn(&mut SurveyTemplateContent), field: &str| {
            let mut c = examples::after_service();
            f(&mut c);
            given::<SurveyTemplate>([]).when(define(c)).then_invalid(field);
        };
        bad(|c| c.questions[0].dimension = Some(Label::trusted("mood")), "questions[0].dimension");
        bad(|c| c.questions[2].dimension = None, "questions[2].dimension");
        bad(|c| c.questions[1].expectation_of = Some(Label::trusted("q_nps")), "questions[1].expectationOf");
        bad(|c| c.questions[1].expectation_of = Some(Label::trusted("q_missing")), "questions[1].expectationOf");
        bad(|c| c.questions[1].dimension = Some(Label::trusted("quality")), "questions[1].expectationOf");
        bad(|c| c.questions.push(c.questions[0].clone()), "questions[8].code");
        bad(|c| c.indicators[1].department = None, "indicators[1].department");
        bad(|c| c.indicators[3].question = Some(Label::trusted("q_comment")), "indicators[3].question");
        bad(|c| c.indicators[3].question = Some(Label::trusted("q_attitude")), "indicators[3].question");
        bad(|c| c.indicators[0].question = Some(Label::trusted("q_nps")), "indicators[0].question");
        bad(|c| c.indicators[1].parent = Some(Label::trusted("nowhere")), "indicators[1].parent");
        bad(|c| c.indicators[2].weight = 0, "indicators[2].weight");
        bad(
            |c| {
                // Four levels.
                c.indicators[0].parent = Some(Label::trusted("root2"));
                c.indicators.push(Indicator {
                    code: Label::trusted("root2"),
                    name: Name::trusted("r2"),
                    parent: Some(Label::trusted("root1")),
                    weight: 1,
                    question: None,
                    department: None,
                });
                c.indicators.push(Indicator {
                    code: Label::trusted("root1"),
                    name: Name::trusted("r1"),
                    parent: None,
                    weight: 1,
                    question: None,
                    department: None,
                });
            },
            "indicators[1].parent",
        );
        bad(|c| c.dimensions.clear(), "dimensions");
        bad(|c| c.questions[0].code = Label::trusted("Q 1"), "questions[0].code");
    }

    #[test]
    fn default_dimensions_are_valid_codes() {
        for d in default_dimensions() {
            check_code("d", &d.code).unwrap();
            assert_eq!(Name::parse("n", d.name.as_str()).unwrap(), d.name);
        }
        examples::after_service().validate().unwrap();
    }
}
