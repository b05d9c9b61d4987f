//! Logging a channel's outages once: the first failure of each kind during an outage is
//! logged, later ones are not, and the first success after an outage logs the recovery.
//! A client polling a dead server every few seconds so writes two lines, not thousands.
//! A failure another channel is already failing with (the same dead server, the same
//! refused token) is recorded without a line of its own.

use std::fmt;

use crate::Error;

/// What kind of failure a request met. An outage logs each kind at most once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Problem {
    /// No answer: refused, reset, timed out, or the body broke off.
    Unreachable,
    /// An answer with an unexpected status.
    Status,
    /// A 200 whose body is not a client document.
    Garbage,
    /// 401 or 403: the token is wrong or lacks the scope.
    Unauthorized,
}

impl Problem {
    pub(crate) fn of(error: &Error) -> Problem {
        match error {
            Error::Unauthorized(_) => Problem::Unauthorized,
            Error::Status(_) => Problem::Status,
            Error::Document(_) | Error::Bootstrap { .. } => Problem::Garbage,
            Error::Unreachable(_) | Error::Config(_) => Problem::Unreachable,
        }
    }

    fn bit(self) -> u8 {
        match self {
            Problem::Unreachable => 1,
            Problem::Status => 2,
            Problem::Garbage => 4,
            Problem::Unauthorized => 8,
        }
    }
}

/// Whether a channel's failures are worth a warning (fetching flags, reporting) or only a
/// debug line (the stream: its loss polling covers, and a refused token or a dead server
/// shows in the fetches too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Warn,
    Debug,
}

/// What [`Health`] decided to log, returned so tests can check it without a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Logged {
    Nothing,
    Failure,
    Recovery,
}

/// One channel's outage state.
#[derive(Debug)]
pub(crate) struct Health {
    channel: &'static str,
    level: Level,
    /// The kinds already logged in the current outage; zero when healthy.
    logged: u8,
    /// The last failure, while the outage lasts.
    current: Option<(Problem, String)>,
}

impl Health {
    pub(crate) fn new(channel: &'static str, level: Level) -> Health {
        Health {
            channel,
            level,
            logged: 0,
            current: None,
        }
    }

    /// The current outage's last failure, if any.
    pub(crate) fn problem(&self) -> Option<&str> {
        self.current.as_ref().map(|(_, text)| text.as_str())
    }

    /// Whether the channel's last request failed with `problem`.
    pub(crate) fn failing_with(&self, problem: Problem) -> bool {
        self.current.as_ref().is_some_and(|(p, _)| *p == problem)
    }

    /// Records a failure; logs it unless this outage logged its kind already, or `quiet`
    /// (another channel logged it).
    pub(crate) fn failed(&mut self, error: &Error, quiet: bool) -> Logged {
        let problem = Problem::of(error);
        self.current = Some((problem, error.to_string()));
        if quiet || self.logged & problem.bit() != 0 {
            return Logged::Nothing;
        }
        let first = self.logged == 0;
        self.logged |= problem.bit();
        let channel = self.channel;
        let detail = Detail { error, first };
        if self.level == Level::Warn {
            tracing::warn!(channel, "gantry flags: {detail}");
        } else {
            tracing::debug!(channel, "gantry flags: {detail}");
        }
        Logged::Failure
    }

    pub(crate) fn succeeded(&mut self) -> Logged {
        self.current = None;
        if self.logged == 0 {
            return Logged::Nothing;
        }
        let logged_warning =
            self.level == Level::Warn || self.logged & Problem::Unauthorized.bit() != 0;
        self.logged = 0;
        let channel = self.channel;
        if logged_warning {
            tracing::info!(channel, "gantry flags: {channel} recovered");
        } else {
            tracing::debug!(channel, "gantry flags: {channel} recovered");
        }
        Logged::Recovery
    }
}

struct Detail<'a> {
    error: &'a Error,
    first: bool,
}

impl fmt::Display for Detail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.error)?;
        if self.first {
            f.write_str("; keeping the flags last loaded, retrying quietly")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Health {
        fn failed_(&mut self, error: &Error) -> Logged {
            self.failed(error, false)
        }
    }

    #[test]
    fn logs_each_kind_once_per_outage_and_the_recovery_once() {
        let mut h = Health::new("features", Level::Warn);
        assert_eq!(h.succeeded(), Logged::Nothing);
        let down = Error::Unreachable("refused".into());
        assert_eq!(h.failed_(&down), Logged::Failure);
        for _ in 0..100 {
            assert_eq!(h.failed_(&down), Logged::Nothing);
        }
        assert_eq!(h.problem(), Some(down.to_string().as_str()));
        assert_eq!(h.failed_(&Error::Status(500)), Logged::Failure);
        assert_eq!(h.failed_(&Error::Status(503)), Logged::Nothing);
        assert_eq!(h.failed_(&Error::Document("eof".into())), Logged::Failure);
        assert_eq!(h.failed_(&Error::Unauthorized(401)), Logged::Failure);
        assert_eq!(h.failed_(&Error::Unauthorized(403)), Logged::Nothing);
        assert_eq!(h.succeeded(), Logged::Recovery);
        assert_eq!(h.succeeded(), Logged::Nothing);
        assert_eq!(h.problem(), None);
        // A new outage is logged again.
        assert_eq!(h.failed_(&down), Logged::Failure);
        assert!(h.failing_with(Problem::Unreachable));
        assert!(!h.failing_with(Problem::Status));
    }

    #[test]
    fn a_quiet_failure_is_recorded_not_logged() {
        let mut h = Health::new("reports", Level::Warn);
        assert_eq!(h.failed(&Error::Unauthorized(401), true), Logged::Nothing);
        assert!(h.failing_with(Problem::Unauthorized));
        assert_eq!(
            h.succeeded(),
            Logged::Nothing,
            "nothing was logged, so no recovery"
        );
        assert_eq!(h.failed(&Error::Unauthorized(401), false), Logged::Failure);
    }
}
