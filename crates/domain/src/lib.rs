//! Concord's domain: the shared record's commands, records and rules, as a pure,
//! deterministic function `apply(state, envelope) -> Transition`.
//!
//! # Layout
//! - [`error`]: [`DomainError`], the one error enum every rule returns, and
//!   [`StorageFault`] for a state view that cannot be read.
//! - [`validate`]: field checks shared by the API edge and apply (field paths in errors).
//! - [`department`], [`item`], [`entity`], [`credit`], [`inspection`], [`case`]: the
//!   records and their rules; [`uscc`] checks unified social credit codes.
//! - [`command`]: the [`Envelope`] (actor, request id, time, command) and [`Response`].
//! - [`state`]: the [`StateRead`] view the store provides, keys, and an in-memory view.
//! - [`authority`]: the authority matrix — who may issue each command — checked at apply.
//! - [`audit`]: the hash-chained full-process record every applied command appends.
//! - [`apply`]: turns one envelope into the writes, events and response of one revision.
//! - [`query`]: read-side functions over a [`StateRead`] (get, list, history).
//! - [`sharing`]: the data-sharing catalogue and who may see which record.
//! - [`event`]: the change-feed events a transition emits.
//!
//! **Architecture invariant:** nothing here reads a clock, draws a random number, does
//! I/O or iterates a hash map. Time, ids and seeds come from the envelope and the
//! revision, so every replica computes the same transition from the same log entry.

pub mod apply;
pub mod audit;
pub mod authority;
pub mod case;
pub mod command;
pub mod credit;
pub mod department;
pub mod digest;
pub mod entity;
pub mod error;
pub mod event;
pub mod inspection;
pub mod item;
pub mod licensing;
pub mod query;
pub mod sharing;
pub mod state;
pub mod uscc;
pub mod validate;

pub use apply::{apply, tick_due, Transition, RETIER_BATCH};
pub use command::{Command, CommandKind, Envelope, Outcome, Principal, Response};
pub use error::{DomainError, Failure, StorageFault};
pub use state::{MemState, Overlay, StateRead, Write};
