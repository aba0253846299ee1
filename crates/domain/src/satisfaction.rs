//! Satisfaction index arithmetic, pure: from how many times each value was given to each
//! question in a group of responses, the indices quality managers read (DOMAIN.md
//! "Satisfaction"; exact definitions in docs/satisfaction.md).
//!
//! - **CSAT %**: 1–5 answers to questions of the `overall` dimension that are 4 or 5, over
//!   all such answers.
//! - **Top-two-box %** (非常满意 + 比较满意): the same over every 1–5 perception answer, in total and
//!   per dimension.
//! - **Mean per dimension**: of the 1–5 perception answers; **gap** = that mean minus the mean
//!   of the dimension's expectation answers (gap model: satisfaction = perception − expectation).
//! - **NPS**: % promoters (9–10) − % detractors (0–6) of the 0–10 answers, −100 to 100.
//! - **CES**: mean of the 1–7 effort answers (7 = very easy).
//! - **Composite**: per template version, Σ wᵢ·sᵢ / Σ wᵢ over the indicator tree's leaves that
//!   have answers, where wᵢ is the leaf's effective weight and sᵢ the mean of its answers as a
//!   score from 0 to 100; across template versions, the mean of those weighted by responses.
//!
//! Every ratio comes with its counts; callers flag small samples.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use uuid::Uuid;

use crate::{
    survey_template::OVERALL_DIMENSION,
    vocab::{QuestionKind, ReviewPeriod},
};

/// A calendar period in a time zone: [start, end) and its label (`2026-11`, `2026-W47`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    /// Start (local midnight).
    pub start: DateTime<Utc>,
    /// End, exclusive.
    pub end: DateTime<Utc>,
    /// `YYYY-MM` or ISO `YYYY-Www`.
    pub label: String,
}

fn local_midnight(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    let naive = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    // A zone that skips midnight (a DST change at 00:00) starts the day at the first instant.
    tz.from_local_datetime(&naive)
        .earliest()
        .or_else(|| tz.from_local_datetime(&(naive + Duration::hours(1))).earliest())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| Utc.from_utc_datetime(&naive))
}

impl Period {
    /// The period containing `at`.
    pub fn containing(kind: ReviewPeriod, tz: Tz, at: DateTime<Utc>) -> Period {
        let local = at.with_timezone(&tz).date_naive();
        let (start, next) = match kind {
            ReviewPeriod::Week => {
                let monday = local - Duration::days(i64::from(local.weekday().num_days_from_monday()));
                (monday, monday + Duration::days(7))
            }
            ReviewPeriod::Month => {
                let first = local.with_day(1).unwrap_or(local);
                let next = if first.month() == 12 {
                    NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
                } else {
                    NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
                }
                .unwrap_or(first);
                (first, next)
            }
        };
        let label = match kind {
            ReviewPeriod::Week => {
                let w = start.iso_week();
                format!("{}-W{:02}", w.year(), w.week())
            }
            ReviewPeriod::Month => format!("{}-{:02}", start.year(), start.month()),
        };
        Period { start: local_midnight(tz, start), end: local_midnight(tz, next), label }
    }

    /// The period before this one.
    pub fn previous(&self, kind: ReviewPeriod, tz: Tz) -> Period {
        Period::containing(kind, tz, self.start - Duration::seconds(1))
    }

    /// The last period that is over at `at`.
    pub fn last_complete(kind: ReviewPeriod, tz: Tz, at: DateTime<Utc>) -> Period {
        Period::containing(kind, tz, at).previous(kind, tz)
    }
}

/// Answers to one question of one template version within a group.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemStats {
    /// The template version.
    pub template: (Uuid, u32),
    /// The question's code.
    pub question: String,
    /// How it is answered.
    pub kind: QuestionKind,
    /// Its dimension.
    pub dimension: Option<String>,
    /// An expectation question.
    pub expectation: bool,
    /// Effective weight of the indicator it scores, if any.
    pub leaf_weight: Option<f64>,
    /// How many times each value was given.
    pub counts: BTreeMap<i32, u64>,
}

impl ItemStats {
    fn n(&self) -> u64 {
        self.counts.values().sum()
    }

    fn sum(&self) -> f64 {
        self.counts.iter().map(|(v, c)| f64::from(*v) * *c as f64).sum()
    }

    fn count_where(&self, f: impl Fn(i32) -> bool) -> u64 {
        self.counts.iter().filter(|(v, _)| f(**v)).map(|(_, c)| *c).sum()
    }

    fn mean_score_percent(&self) -> Option<f64> {
        let n = self.n();
        if n == 0 {
            return None;
        }
        let total: f64 = self.counts.iter().map(|(v, c)| self.kind.score_percent(*v).unwrap_or(0.0) * *c as f64).sum();
        Some(total / n as f64)
    }
}

/// A share with its counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ratio {
    /// Answers that count.
    pub hits: u64,
    /// All answers.
    pub total: u64,
}

impl Ratio {
    /// In percent; `None` without answers.
    pub fn percent(&self) -> Option<f64> {
        (self.total > 0).then(|| self.hits as f64 * 100.0 / self.total as f64)
    }
}

/// Promoters, passives and detractors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NpsCounts {
    /// 9–10.
    pub promoters: u64,
    /// 7–8.
    pub passives: u64,
    /// 0–6.
    pub detractors: u64,
}

impl NpsCounts {
    /// All answers.
    pub fn total(&self) -> u64 {
        self.promoters + self.passives + self.detractors
    }

    /// % promoters − % detractors; `None` without answers.
    pub fn score(&self) -> Option<f64> {
        let n = self.total();
        (n > 0).then(|| (self.promoters as f64 - self.detractors as f64) * 100.0 / n as f64)
    }
}

/// One dimension's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct DimensionFigures {
    /// The dimension's code.
    pub dimension: String,
    /// 1–5 perception answers.
    pub answers: u64,
    /// Their mean.
    pub mean: Option<f64>,
    /// Their top-two-box share.
    pub top_two_box: Ratio,
    /// Expectation answers.
    pub expectation_answers: u64,
    /// Their mean.
    pub expectation_mean: Option<f64>,
    /// Perception mean − expectation mean.
    pub gap: Option<f64>,
}

/// The indices of a group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Indices {
    /// Responses in the group.
    pub responses: u64,
    /// CSAT.
    pub csat: Ratio,
    /// Top-two-box over all dimensions.
    pub top_two_box: Ratio,
    /// NPS.
    pub nps: NpsCounts,
    /// CES answers.
    pub ces_answers: u64,
    /// Mean CES.
    pub ces: Option<f64>,
    /// The weighted composite index, 0–100.
    pub composite: Option<f64>,
    /// Per dimension, by code.
    pub dimensions: Vec<DimensionFigures>,
}

impl Indices {
    /// One index by kind (what alerts compare).
    pub fn value(&self, kind: crate::vocab::SatisfactionIndexKind) -> Option<f64> {
        use crate::vocab::SatisfactionIndexKind as K;
        match kind {
            K::Csat => self.csat.percent(),
            K::TopTwoBox => self.top_two_box.percent(),
            K::Nps => self.nps.score(),
            K::Ces => self.ces,
            K::Composite => self.composite,
        }
    }
}

/// Computes a group's indices. `responses` counts the group's responses per template version
/// (the composite's weights across versions).
pub fn indices(items: &[ItemStats], responses: &BTreeMap<(Uuid, u32), u64>) -> Indices {
    let mut out = Indices { responses: responses.values().sum(), ..Indices::default() };
    let top2 = |i: &ItemStats| Ratio { hits: i.count_where(|v| v >= 4), total: i.n() };
    let mut dims: BTreeMap<String, (u64, f64, Ratio, u64, f64)> = BTreeMap::new();
    let (mut ces_n, mut ces_sum) = (0u64, 0.0f64);
    for item in items {
        match item.kind {
            QuestionKind::Likert5 => {
                let dim = item.dimension.clone().unwrap_or_default();
                let entry = dims.entry(dim.clone()).or_default();
                if item.expectation {
                    entry.3 += item.n();
                    entry.4 += item.sum();
                    continue;
                }
                let t = top2(item);
                entry.0 += item.n();
                entry.1 += item.sum();
                entry.2.hits += t.hits;
                entry.2.total += t.total;
                out.top_two_box.hits += t.hits;
                out.top_two_box.total += t.total;
                if dim == OVERALL_DIMENSION {
                    out.csat.hits += t.hits;
                    out.csat.total += t.total;
                }
            }
            QuestionKind::Nps0To10 => {
                out.nps.promoters += item.count_where(|v| v >= 9);
                out.nps.passives += item.count_where(|v| (7..=8).contains(&v));
                out.nps.detractors += item.count_where(|v| v <= 6);
            }
            QuestionKind::Ces1To7 => {
                ces_n += item.n();
                ces_sum += item.sum();
            }
            QuestionKind::YesNo | QuestionKind::FreeText => {}
        }
    }
    out.ces_answers = ces_n;
    out.ces = (ces_n > 0).then(|| ces_sum / ces_n as f64);
    out.dimensions = dims
        .into_iter()
        .map(|(dimension, (n, sum, t, en, esum))| {
            let mean = (n > 0).then(|| sum / n as f64);
            let expectation_mean = (en > 0).then(|| esum / en as f64);
            DimensionFigures {
                dimension,
                answers: n,
                mean,
                top_two_box: t,
                expectation_answers: en,
                expectation_mean,
                gap: mean.zip(expectation_mean).map(|(p, e)| p - e),
            }
        })
        .collect();

    // Composite: per template version, then weighted by its responses.
    let mut per_template: BTreeMap<(Uuid, u32), (f64, f64, u64)> = BTreeMap::new();
    for item in items.iter().filter(|i| i.leaf_weight.is_some() && !i.expectation) {
        let (Some(w), Some(s)) = (item.leaf_weight, item.mean_score_percent()) else { continue };
        let e = per_template.entry(item.template).or_default();
        e.0 += w * s;
        e.1 += w;
        e.2 = e.2.max(item.n());
    }
    let (mut num, mut den) = (0.0, 0.0);
    for (template, (ws, w, most)) in per_template {
        if w <= 0.0 {
            continue;
        }
        let n = responses.get(&template).copied().filter(|n| *n > 0).unwrap_or(most) as f64;
        num += n * ws / w;
        den += n;
    }
    out.composite = (den > 0.0).then(|| num / den);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::SatisfactionIndexKind;

    const T1: (Uuid, u32) = (Uuid::from_u128(1), 1);
    const T2: (Uuid, u32) = (Uuid::from_u128(1), 2);

    fn item(q: &str, kind: QuestionKind, dim: Option<&str>, values: &[(i32, u64)]) -> ItemStats {
        ItemStats {
            template: T1,
            question: q.into(),
            kind,
            dimension: dim.map(str::to_string),
            expectation: false,
            leaf_weight: None,
            counts: values.iter().copied().collect(),
        }
    }

    fn responses(n: u64) -> BTreeMap<(Uuid, u32), u64> {
        [(T1, n)].into_iter().collect()
    }

    #[test]
    fn csat_top_two_box_and_dimension_means_by_hand() {
        // Overall: 5,5,4,3,1 → 3 of 5 are 4–5 = 60 %; mean 3.6.
        // Attitude: 4,4,2,2 → top-two-box 50 %, mean 3.0; expectation 5,5,4,4 → mean 4.5, gap −1.5.
        let mut expect = item("q_att_exp", QuestionKind::Likert5, Some("attitude"), &[(5, 2), (4, 2)]);
        expect.expectation = true;
        let items = vec![
            item("q_overall", QuestionKind::Likert5, Some("overall"), &[(5, 2), (4, 1), (3, 1), (1, 1)]),
            item("q_att", QuestionKind::Likert5, Some("attitude"), &[(4, 2), (2, 2)]),
            expect,
        ];
        let ix = indices(&items, &responses(5));
        assert_eq!(ix.responses, 5);
        assert_eq!(ix.csat, Ratio { hits: 3, total: 5 });
        assert_eq!(ix.csat.percent(), Some(60.0));
        assert_eq!(ix.top_two_box, Ratio { hits: 5, total: 9 }, "expectation answers are not perception");
        let att = ix.dimensions.iter().find(|d| d.dimension == "attitude").unwrap();
        assert_eq!((att.answers, att.mean, att.expectation_mean), (4, Some(3.0), Some(4.5)));
        assert_eq!(att.gap, Some(-1.5));
        let overall = ix.dimensions.iter().find(|d| d.dimension == "overall").unwrap();
        assert_eq!(overall.mean, Some(3.6));
        assert_eq!(overall.gap, None, "no expectation asked");
    }

    #[test]
    fn nps_edge_cases() {
        let nps =
            |values: &[(i32, u64)]| indices(&[item("q", QuestionKind::Nps0To10, None, values)], &responses(1)).nps;
        // 10,9 promoters; 8,7 passives; 6,0 detractors → (2 − 2) / 6 = 0.
        let mixed = nps(&[(10, 1), (9, 1), (8, 1), (7, 1), (6, 1), (0, 1)]);
        assert_eq!((mixed.promoters, mixed.passives, mixed.detractors), (2, 2, 2));
        assert_eq!(mixed.score(), Some(0.0));
        assert_eq!(nps(&[(10, 3)]).score(), Some(100.0));
        assert_eq!(nps(&[(6, 4)]).score(), Some(-100.0));
        assert_eq!(nps(&[(7, 2), (8, 5)]).score(), Some(0.0), "all passives");
        // 3 promoters, 1 passive, 1 detractor: (3 − 1) / 5 = 40.
        assert_eq!(nps(&[(9, 3), (7, 1), (2, 1)]).score(), Some(40.0));
        assert_eq!(nps(&[]).score(), None);
    }

    #[test]
    fn composite_weights_leaves_and_template_versions() {
        // Leaves of T1: attitude w .375 (answers 5,3 → mean score (100+50)/2 = 75),
        // speed w .375 (4 → 75), solved w .25 (yes, no → 50).
        // Composite T1 = .375·75 + .375·75 + .25·50 = 68.75.
        let mut att = item("q_att", QuestionKind::Likert5, Some("attitude"), &[(5, 1), (3, 1)]);
        att.leaf_weight = Some(0.375);
        let mut speed = item("q_speed", QuestionKind::Likert5, Some("efficiency"), &[(4, 1)]);
        speed.leaf_weight = Some(0.375);
        let mut solved = item("q_solved", QuestionKind::YesNo, None, &[(1, 1), (0, 1)]);
        solved.leaf_weight = Some(0.25);
        let t1 = vec![att.clone(), speed.clone(), solved.clone()];
        let ix = indices(&t1, &responses(2));
        assert!((ix.composite.unwrap() - 68.75).abs() < 1e-9, "{:?}", ix.composite);

        // A leaf without answers drops out and the others are renormalised: .375·75 + .375·75
        // over .75 = 75.
        let ix = indices(&[att.clone(), speed.clone()], &responses(2));
        assert!((ix.composite.unwrap() - 75.0).abs() < 1e-9);

        // A second version (one leaf, NPS 10 → 100) with 1 response against T1's 3:
        // (3·68.75 + 1·100) / 4 = 76.5625.
        let mut nps = item("q_nps", QuestionKind::Nps0To10, None, &[(10, 1)]);
        nps.template = T2;
        nps.leaf_weight = Some(1.0);
        let mut both = t1.clone();
        both.push(nps);
        let r: BTreeMap<_, _> = [(T1, 3), (T2, 1)].into_iter().collect();
        let ix = indices(&both, &r);
        assert!((ix.composite.unwrap() - 76.5625).abs() < 1e-9, "{:?}", ix.composite);
        assert_eq!(ix.responses, 4);
    }

    #[test]
    fn empty_groups_have_counts_and_no_ratios() {
        let ix = indices(&[], &BTreeMap::new());
        assert_eq!(ix.responses, 0);
        assert_eq!(ix.csat.percent(), None);
        assert_eq!(ix.nps.score(), None);
        assert_eq!(ix.ces, None);
        assert_eq!(ix.composite, None);
        assert!(ix.dimensions.is_empty());
        for k in SatisfactionIndexKind::ALL {
            assert_eq!(ix.value(*k), None);
        }
    }

    #[test]
    fn periods_follow_the_local_calendar() {
        let tz: Tz = "Asia/Shanghai".parse().unwrap();
        let at = DateTime::parse_from_rfc3339("2026-11-01T03:00:00+08:00").unwrap().with_timezone(&Utc);
        let month = Period::containing(ReviewPeriod::Month, tz, at);
        assert_eq!(month.label, "2026-11");
        assert_eq!(month.start.to_rfc3339(), "2026-10-31T16:00:00+00:00");
        assert_eq!(month.end.to_rfc3339(), "2026-11-30T16:00:00+00:00");
        let last = Period::last_complete(ReviewPeriod::Month, tz, at);
        assert_eq!((last.label.as_str(), last.end), ("2026-10", month.start));
        let dec = Period::containing(ReviewPeriod::Month, tz, month.end);
        assert_eq!(dec.label, "2026-12");
        assert_eq!(Period::containing(ReviewPeriod::Month, tz, dec.end).label, "2027-01");
        // Sunday 22 November 2026 is in ISO week 47, which began on Monday the 16th.
        let week = Period::containing(ReviewPeriod::Week, tz, at + Duration::days(21));
        assert_eq!(week.label, "2026-W47");
        assert_eq!(week.start.to_rfc3339(), "2026-11-15T16:00:00+00:00");
        assert_eq!(week.previous(ReviewPeriod::Week, tz).label, "2026-W46");
        // Across a DST change the period is still whole local days.
        let ny: Tz = "America/New_York".parse().unwrap();
        let march = Period::containing(ReviewPeriod::Month, ny, Utc.with_ymd_and_hms(2026, 3, 15, 12, 0, 0).unwrap());
        assert_eq!(march.start.to_rfc3339(), "2026-03-01T05:00:00+00:00");
        assert_eq!(march.end.to_rfc3339(), "2026-04-01T04:00:00+00:00");
    }

    #[test]
    fn ces_is_the_mean_effort() {
        let ix = indices(&[item("q", QuestionKind::Ces1To7, None, &[(7, 2), (4, 1), (1, 1)])], &responses(4));
        assert_eq!((ix.ces_answers, ix.ces), (4, Some(4.75)));
        assert_eq!(ix.value(SatisfactionIndexKind::Ces), Some(4.75));
    }
}
