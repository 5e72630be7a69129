//! One delivery attempt of a worker, run as a task of its in-flight set: the event read (when the
//! job does not carry it), an undecodable record dead-lettered at once, a settled event whose
//! dead letter is still due handed back for it, else one attempt through `request::attempt`
//! with the bus's schema hook. What comes back (`Done`) is settled by `settle.rs`.

use super::{read, settle, stand_in, Done, Job, Worker};
use crate::deliver::{Failure, Outcome};
use crate::dlq;
use crate::request;
use busbar_broker::event::{Decoded, StoredEvent};

impl Worker {
    pub(super) fn launch(&mut self, job: Job, event: Option<StoredEvent>) {
        let (ctx, sub, sink) = (self.ctx.clone(), self.sub.clone(), self.sink.clone());
        let topic_id = (self.parts.iter())
            .find(|p| p.topic == job.r.topic)
            .map(|p| p.topic_id.clone());
        self.inflight.spawn(async move {
            let event = match event {
                Some(e) => Ok(Some(e)),
                None => match read::read_one(&ctx, &job.r, topic_id).await {
                    Ok(read::Found::NotHere(error)) => {
                        let failure = Failure {
                            reason: read::NOT_HERE,
                            status: None,
                            error,
                        };
                        let outcome = Outcome::Retry {
                            failure,
                            retry_after_ms: None,
                        };
                        return Done {
                            job,
                            event: None,
                            outcome,
                        };
                    }
                    Ok(read::Found::Item(Decoded::Undecodable {
                        timestamp, error, ..
                    })) if job.entry.as_ref().is_none_or(|e| e.dead_letter.is_none()) => {
                        // Nothing to deliver: dead-lettered at once as undecodable.
                        let f = Failure {
                            reason: dlq::UNDECODABLE,
                            status: None,
                            error,
                        };
                        let event = Some(stand_in(&job.r, timestamp));
                        let outcome = Outcome::Fatal(f);
                        return Done {
                            job,
                            event,
                            outcome,
                        };
                    }
                    Ok(read::Found::Item(Decoded::Undecodable { timestamp, .. })) => {
                        Ok(Some(stand_in(&job.r, timestamp)))
                    }
                    Ok(read::Found::Item(Decoded::Event(e))) => Ok(Some(e)),
                    Ok(read::Found::Gone) => Ok(None),
                    Err(e) => Err(e),
                },
            };
            let letter_due = job.entry.as_ref().and_then(|e| e.dead_letter.as_ref());
            match event {
                Ok(Some(e)) if letter_due.is_some() => Done {
                    // Settled already: only its dead letter is left to write (in `on_done`).
                    outcome: Outcome::Fatal(settle::stored_failure(
                        job.entry.as_ref().expect("set"),
                    )),
                    job,
                    event: Some(e),
                },
                Ok(Some(e)) => {
                    let decoder = ctx.shared.decoder();
                    let via = request::Via {
                        broker: &ctx.broker,
                        http: &ctx.http,
                        sink: sink.as_deref(),
                        decoder: decoder.as_ref(),
                        attempt: job.entry.as_ref().map_or(0, |e| e.attempts) + 1,
                    };
                    let outcome = request::attempt(via, &sub, &e, None).await;
                    Done {
                        job,
                        event: Some(e),
                        outcome,
                    }
                }
                Ok(None) => Done {
                    job,
                    event: None,
                    outcome: Outcome::Delivered,
                },
                Err(e) => Done {
                    job,
                    event: None,
                    outcome: Outcome::Retry {
                        failure: Failure {
                            reason: "storage",
                            status: None,
                            error: e.to_string(),
                        },
                        retry_after_ms: None,
                    },
                },
            }
        });
    }
}
