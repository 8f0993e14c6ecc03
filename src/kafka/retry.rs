//! Broker requests of a running shard that ride out a broker briefly out of reach.
//!
//! librdkafka retries what it sends and fetches by itself (a produced record for
//! `message.timeout.ms`, 60 s), but a metadata or offsets request made with a timeout fails
//! when that timeout passes. A commit that failed on such an error stopped the process: a
//! network cut of ~10 s mid-stream did (`tests/kafka_outage.rs`, session 27). Exactly once
//! held, because a failed commit is recovered like a crash, but the process should not need a
//! restart for a blip. So the requests a shard makes while it commits retry transient
//! failures for up to [`OUTAGE_LIMIT`], the same time librdkafka gives a produced record.
//! Startup does not retry: a broker that cannot be reached there is more likely a wrong
//! address than an outage, and the error says which setting to check.

use super::KafkaError;
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use std::time::{Duration, Instant};

/// How long a request is retried while the broker cannot be reached: librdkafka's
/// `message.timeout.ms` as shopscore sets it ([`super::client::Clients::producer`]).
pub const OUTAGE_LIMIT: Duration = Duration::from_secs(60);

/// Whether `e` says the broker could not be reached or answered in time (as opposed to a
/// refusal, such as a missing topic or a denied request).
fn is_transient(e: &RdError) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        e.rdkafka_error_code(),
        Some(
            BrokerTransportFailure
                | AllBrokersDown
                | OperationTimedOut
                | RequestTimedOut
                | NetworkException
                | LeaderNotAvailable
                | NotLeaderForPartition
                | BrokerNotAvailable
                | NotCoordinator
                | CoordinatorNotAvailable
                | CoordinatorLoadInProgress
        )
    )
}

/// Runs `request` until it succeeds, fails with an error that is not transient, or has
/// failed transiently for [`OUTAGE_LIMIT`]; `what` names it in the warnings and the error.
pub fn retried<T>(
    what: impl Fn() -> String,
    request: impl FnMut() -> Result<T, RdError>,
) -> Result<T, KafkaError> {
    retried_for(OUTAGE_LIMIT, what, request)
}

fn retried_for<T>(
    limit: Duration,
    what: impl Fn() -> String,
    mut request: impl FnMut() -> Result<T, RdError>,
) -> Result<T, KafkaError> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(100);
    loop {
        match request() {
            Ok(v) => return Ok(v),
            Err(e) if is_transient(&e) && start.elapsed() < limit => {
                tracing::warn!(
                    request = %what(),
                    error = %e,
                    failing_for_s = start.elapsed().as_secs(),
                    retrying_for_s = limit.as_secs(),
                    "broker request failed, retrying"
                );
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(source) => return Err(KafkaError::Client { context: what(), source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transport() -> RdError {
        RdError::MetadataFetch(RDKafkaErrorCode::BrokerTransportFailure)
    }

    /// Transient failures are retried until the request succeeds.
    #[test]
    fn a_transient_failure_is_retried_until_the_request_succeeds() {
        let mut calls = 0;
        let got = retried_for(
            Duration::from_secs(5),
            || "a test request".into(),
            || {
                calls += 1;
                if calls < 3 {
                    Err(transport())
                } else {
                    Ok(calls)
                }
            },
        );
        assert_eq!(got.unwrap(), 3);
    }

    /// A refusal is returned at once, named after the request.
    #[test]
    fn a_refusal_is_not_retried() {
        let mut calls = 0;
        let got: Result<(), _> = retried_for(
            Duration::from_secs(5),
            || "a test request".into(),
            || {
                calls += 1;
                Err(RdError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition))
            },
        );
        assert_eq!(calls, 1);
        assert!(got.unwrap_err().to_string().contains("while a test request"));
    }

    /// A failure that lasts past the limit ends the retries with the last error.
    #[test]
    fn a_transient_failure_past_the_limit_is_returned() {
        let mut calls = 0;
        let start = Instant::now();
        let got: Result<(), _> = retried_for(
            Duration::from_millis(250),
            || "a test request".into(),
            || {
                calls += 1;
                Err(transport())
            },
        );
        assert!(calls >= 2, "{calls} calls");
        assert!(start.elapsed() >= Duration::from_millis(250));
        assert!(got.unwrap_err().to_string().contains("Broker transport failure"));
    }
}
