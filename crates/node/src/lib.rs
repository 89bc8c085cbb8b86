//! A Concord node: the gRPC services department systems call, the raft network
//! between nodes, forwarding to the leader, read consistency, and configuration.
//!
//! # Layout
//! - [`config`]: TOML + `CONCORD_*` environment, validated.
//! - [`server`]: wiring config → store → network → Raft → gRPC server.
//! - [`core`]: writes through the leader, read barriers, membership, ticks, bootstrap.
//! - [`membership`]: the leader keeps the configured voter count and removes scaled-down pods.
//! - [`network`]: openraft's network over the internal `RaftService`, and forwarding.
//! - [`services`]: one module per gRPC service; handlers validate → propose/read → map.
//! - [`auth`]: who the caller is (certificate identity) and what they may call here.
//! - [`client`]: dialling a node (peers, tools, tests) over mutual TLS.
//! - [`transport`]: the mutual-TLS listener and dialer, refusals, certificate reload.
//! - [`convert`]: wire ↔ domain types; [`error`]: the one mapping to `tonic::Status`.
//!
//! **API boundary:** only this crate knows both prost and domain types.

pub mod auth;
pub mod client;
pub mod coalesce;
pub mod compaction;
pub mod config;
pub mod convert;
pub mod core;
pub mod error;
pub mod forwarder;
pub mod gather;
pub mod membership;
pub mod metrics;
pub mod network;
pub mod ops;
pub mod rpc;
pub mod server;
pub mod services;
#[cfg(test)]
mod test_peer;
pub mod transport;

pub use config::NodeConfig;
pub use server::{start, start_with_listener, RunningNode, StartError};
