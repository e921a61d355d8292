//! The one retry state every loop of the SDK runs on: what a failure says,
//! whether to try again at once, after a pause, or not at all, and when a run
//! of failures has used up the policy.
//!
//! A unary call, a read stream that resumes and the producer's append stream
//! all retry the same way. A node that does not lead answers `UNAVAILABLE` and
//! names the leader in `x-veritrail-leader`: the SDK prefers it and tries again
//! at once, a few times in a row at most. Any other retryable failure waits a
//! jittered exponential backoff. Every call in Veritrail is safe to repeat
//! (appends carry their idempotency key), so the only question is whether
//! trying again can help.

use std::time::{Duration, Instant};

use tonic::{Code, Status};

use crate::config::RetryPolicy;
use crate::error::Error;

/// Response metadata naming the leader's `host:port` (docs/ERRORS.md).
pub const LEADER_ADDR_METADATA: &str = "x-veritrail-leader";

/// Consecutive leader redirects followed without a pause: enough for one
/// election's worth of stale hints, few enough that two nodes naming each other
/// cannot spin.
pub(crate) const REDIRECTS_WITHOUT_BACKOFF_MAX: u32 = 3;

/// What a failed attempt says about the node that gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The answer is final: trying again cannot change it.
    Final,
    /// The node is busy, or the request raced a change: the same node, later.
    Later,
    /// This node cannot answer now; another may, the leader first when this
    /// one named it.
    Elsewhere { leader: Option<String> },
}

impl Verdict {
    /// What is retryable, and where.
    pub(crate) fn of(status: &Status) -> Verdict {
        match status.code() {
            Code::Unavailable => Verdict::Elsewhere {
                leader: leader_hint(status),
            },
            // A node that times out or fails internally may be cut off or
            // broken: another node may answer. The cluster may still commit an
            // append that timed out; the retry carries the same event ids.
            Code::DeadlineExceeded | Code::Internal | Code::Unknown | Code::Cancelled => {
                Verdict::Elsewhere { leader: None }
            }
            Code::ResourceExhausted | Code::Aborted => Verdict::Later,
            _ => Verdict::Final,
        }
    }
}

/// What to do after a failed attempt, once the transport has acted on the
/// [`Verdict`] (followed a leader hint, or moved away from the node).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Not retryable: the answer is final.
    No,
    /// The leader is elsewhere and now preferred: retry at once.
    Redirected,
    /// Retry after a backoff.
    Backoff,
}

/// What the retry state says to do next.
#[derive(Debug)]
pub(crate) enum Next {
    /// Try again at once: a node named the leader, which is now preferred.
    Now,
    /// Try again after this pause, already cut to the time the policy has left.
    After(Duration),
    /// Give up: the failure is final, and this is it.
    Final(Error),
    /// Give up: the run used up the policy's attempts or deadline. The error
    /// says how many attempts were made over how long, around the last one.
    Exhausted(Error),
}

/// One run of failed attempts at one operation: how many, since when, the
/// redirects followed in a row and the backoff so far. Progress ends the run
/// ([`RetryState::reset`]); the next failure starts a new one with a fresh
/// budget.
#[derive(Debug)]
pub(crate) struct RetryState {
    policy: RetryPolicy,
    /// False for the producer's stream, which sees a failure per "not the
    /// leader" answer of an election and is bounded by the deadline alone.
    limit_attempts: bool,
    /// When the run's clock started: before the first attempt of a call, at
    /// the first failure of a stream that was working.
    since: Option<Instant>,
    failures: u32,
    redirects: u32,
    /// Pauses taken so far: the next one is the policy's next backoff step.
    backoffs: u32,
}

impl RetryState {
    /// A run bounded by the policy's attempts and deadline, its clock started
    /// by the first failure.
    pub(crate) fn new(policy: RetryPolicy) -> RetryState {
        RetryState {
            policy,
            limit_attempts: true,
            since: None,
            failures: 0,
            redirects: 0,
            backoffs: 0,
        }
    }

    /// Starts the clock now, before the first attempt: a call's deadline
    /// covers the time its first attempt took too.
    pub(crate) fn starting_now(mut self) -> RetryState {
        self.since = Some(Instant::now());
        self
    }

    /// Bounds the run by the deadline alone.
    pub(crate) fn without_attempt_limit(mut self) -> RetryState {
        self.limit_attempts = false;
        self
    }

    /// Failures so far in this run.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    /// How long this run has lasted.
    pub(crate) fn elapsed(&self) -> Duration {
        self.since.map_or(Duration::ZERO, |since| since.elapsed())
    }

    /// Counts a failed attempt and says what to do next.
    pub(crate) fn after_failure(&mut self, retry: Retry, status: &Status) -> Next {
        let since = *self.since.get_or_insert_with(Instant::now);
        self.failures = self.failures.saturating_add(1);
        if retry == Retry::No {
            return Next::Final(status.clone().into());
        }
        let attempts_spent = self.limit_attempts && self.failures >= self.policy.call_max_attempts;
        if attempts_spent || since.elapsed() >= self.policy.deadline() {
            return Next::Exhausted(exhausted(self.failures, since, status.clone().into()));
        }
        if retry == Retry::Redirected && self.redirects < REDIRECTS_WITHOUT_BACKOFF_MAX {
            self.redirects += 1;
            return Next::Now;
        }
        self.redirects = 0;
        // A fresh jittered sequence, stepped to this run's place in it: the
        // state holds no iterator, so it stays Send and Sync for the streams
        // that hold it across awaits.
        let delay = self
            .policy
            .backoff()
            .nth(self.backoffs as usize)
            .unwrap_or(Duration::from_millis(self.policy.backoff_max_ms));
        self.backoffs = self.backoffs.saturating_add(1);
        let left = self.policy.deadline().saturating_sub(since.elapsed());
        Next::After(delay.min(left))
    }

    /// Ends the run: the operation made progress.
    pub(crate) fn reset(&mut self) {
        *self = RetryState {
            limit_attempts: self.limit_attempts,
            ..RetryState::new(self.policy)
        };
    }
}

/// The error after the last attempt: the last failure itself when there was
/// only one, so a call that was never retried reads as it failed.
fn exhausted(attempts: u32, since: Instant, last: Error) -> Error {
    if attempts <= 1 {
        return last;
    }
    Error::RetriesExhausted {
        attempts,
        elapsed_ms: since.elapsed().as_millis() as u64,
        last: Box::new(last),
        tried: Vec::new(),
    }
}

/// The leader a node named in its answer.
pub(crate) fn leader_hint(status: &Status) -> Option<String> {
    status
        .metadata()
        .get(LEADER_ADDR_METADATA)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            call_max_attempts: 6,
            backoff_initial_ms: 1,
            backoff_max_ms: 2,
            deadline_ms: 60_000,
        }
    }

    #[test]
    fn sorts_failures_by_what_retrying_can_do() {
        let mut hinted = Status::unavailable("not the leader");
        hinted.metadata_mut().insert(
            LEADER_ADDR_METADATA,
            tonic::metadata::MetadataValue::from_static("127.0.0.1:3"),
        );
        assert_eq!(
            Verdict::of(&hinted),
            Verdict::Elsewhere {
                leader: Some("127.0.0.1:3".into())
            }
        );
        assert_eq!(
            Verdict::of(&Status::deadline_exceeded("slow")),
            Verdict::Elsewhere { leader: None }
        );
        assert_eq!(Verdict::of(&Status::aborted("raced")), Verdict::Later);
        assert_eq!(
            Verdict::of(&Status::invalid_argument("bad")),
            Verdict::Final
        );
    }

    #[test]
    fn follows_a_few_redirects_at_once_then_backs_off() {
        let mut state = RetryState::new(policy());
        let status = Status::unavailable("not the leader");
        for _ in 0..REDIRECTS_WITHOUT_BACKOFF_MAX {
            assert!(matches!(
                state.after_failure(Retry::Redirected, &status),
                Next::Now
            ));
        }
        assert!(matches!(
            state.after_failure(Retry::Redirected, &status),
            Next::After(_)
        ));
        assert!(matches!(
            state.after_failure(Retry::Redirected, &status),
            Next::Now
        ));
        // The sixth failure spends the attempts.
        match state.after_failure(Retry::Backoff, &status) {
            Next::Exhausted(Error::RetriesExhausted { attempts: 6, .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_final_failure_is_returned_as_it_is() {
        let mut state = RetryState::new(policy());
        match state.after_failure(Retry::No, &Status::already_exists("dup")) {
            Next::Final(error) => assert_eq!(error.code(), Some(Code::AlreadyExists)),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn without_an_attempt_limit_only_the_deadline_ends_a_run() {
        let mut state = RetryState::new(RetryPolicy {
            call_max_attempts: 1,
            ..policy()
        })
        .without_attempt_limit();
        let status = Status::unavailable("down");
        for _ in 0..10 {
            assert!(matches!(
                state.after_failure(Retry::Backoff, &status),
                Next::After(_)
            ));
        }
        let mut state = RetryState::new(RetryPolicy {
            deadline_ms: 0,
            ..policy()
        })
        .without_attempt_limit();
        assert!(matches!(
            state.after_failure(Retry::Backoff, &status),
            Next::Exhausted(_)
        ));
    }

    #[test]
    fn progress_starts_a_new_run() {
        let mut state = RetryState::new(RetryPolicy {
            call_max_attempts: 2,
            ..policy()
        });
        let status = Status::unavailable("down");
        assert!(matches!(
            state.after_failure(Retry::Backoff, &status),
            Next::After(_)
        ));
        state.reset();
        assert_eq!(state.failures(), 0);
        assert!(matches!(
            state.after_failure(Retry::Backoff, &status),
            Next::After(_)
        ));
        assert!(matches!(
            state.after_failure(Retry::Backoff, &status),
            Next::Exhausted(_)
        ));
    }
}
