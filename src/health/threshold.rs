//! The consecutive-result thresholds of interval checks
//! (`SuccessBeforePassing`, `FailuresBeforeWarning`, `FailuresBeforeCritical`).
//!
//! Matches Consul's behaviour: a warning result counts as a success; the
//! counters start at their thresholds, so the first result after a check
//! starts applies at once and only later transitions wait for a streak.
//! While a streak is short of its threshold nothing is reported, not even
//! the new output.

use crate::catalog::types::{CheckDefinition, HealthStatus};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thresholds {
    success_before_passing: u32,
    failures_before_warning: u32,
    failures_before_critical: u32,
    successes: u32,
    failures: u32,
}

impl Thresholds {
    pub fn new(
        success_before_passing: u32,
        failures_before_warning: u32,
        failures_before_critical: u32,
    ) -> Thresholds {
        // An unset FailuresBeforeWarning means "the same as FailuresBeforeCritical".
        let failures_before_warning = if failures_before_warning == 0 {
            failures_before_critical
        } else {
            failures_before_warning
        };
        Thresholds {
            success_before_passing,
            failures_before_warning,
            failures_before_critical,
            successes: success_before_passing,
            failures: failures_before_critical,
        }
    }

    pub fn for_definition(d: &CheckDefinition) -> Thresholds {
        Thresholds::new(
            d.success_before_passing,
            d.failures_before_warning,
            d.failures_before_critical,
        )
    }

    /// Feeds one probe result; returns the status to report, if any.
    pub fn observe(&mut self, result: HealthStatus) -> Option<HealthStatus> {
        match result {
            HealthStatus::Passing | HealthStatus::Warning => {
                self.successes = self.successes.saturating_add(1);
                self.failures = 0;
                (self.successes >= self.success_before_passing).then_some(result)
            }
            HealthStatus::Critical => {
                self.failures = self.failures.saturating_add(1);
                self.successes = 0;
                if self.failures >= self.failures_before_critical {
                    Some(HealthStatus::Critical)
                } else if self.failures >= self.failures_before_warning {
                    Some(HealthStatus::Warning)
                } else {
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use HealthStatus::*;

    fn feed(t: &mut Thresholds, results: &[HealthStatus]) -> Vec<Option<HealthStatus>> {
        results.iter().map(|r| t.observe(*r)).collect()
    }

    #[test]
    fn no_thresholds_report_every_result() {
        let mut t = Thresholds::new(0, 0, 0);
        assert_eq!(
            feed(&mut t, &[Passing, Critical, Warning, Critical]),
            vec![Some(Passing), Some(Critical), Some(Warning), Some(Critical)]
        );
    }

    #[test]
    fn first_result_applies_at_once() {
        let mut t = Thresholds::new(3, 0, 3);
        assert_eq!(t.observe(Passing), Some(Passing));
        let mut t = Thresholds::new(3, 0, 3);
        assert_eq!(t.observe(Critical), Some(Critical));
    }

    #[test]
    fn failures_before_critical_needs_a_streak() {
        let mut t = Thresholds::new(0, 0, 3);
        assert_eq!(t.observe(Passing), Some(Passing));
        assert_eq!(
            feed(
                &mut t,
                &[Critical, Critical, Passing, Critical, Critical, Critical]
            ),
            vec![None, None, Some(Passing), None, None, Some(Critical)]
        );
    }

    #[test]
    fn success_before_passing_needs_a_streak() {
        let mut t = Thresholds::new(2, 0, 0);
        assert_eq!(t.observe(Critical), Some(Critical));
        assert_eq!(
            feed(&mut t, &[Passing, Critical, Passing, Passing]),
            vec![None, Some(Critical), None, Some(Passing)]
        );
    }

    #[test]
    fn warning_threshold_comes_before_critical() {
        let mut t = Thresholds::new(0, 1, 3);
        assert_eq!(t.observe(Passing), Some(Passing));
        assert_eq!(
            feed(&mut t, &[Critical, Critical, Critical]),
            vec![Some(Warning), Some(Warning), Some(Critical)]
        );
    }

    #[test]
    fn warning_results_count_as_successes() {
        let mut t = Thresholds::new(2, 0, 2);
        t.observe(Critical);
        assert_eq!(feed(&mut t, &[Warning, Warning]), vec![None, Some(Warning)]);
    }

    #[test]
    fn warning_threshold_defaults_to_critical_threshold() {
        let mut t = Thresholds::new(0, 0, 2);
        t.observe(Passing);
        assert_eq!(
            feed(&mut t, &[Critical, Critical]),
            vec![None, Some(Critical)]
        );
    }
}
