//! gRPC handlers. Each one: validate → propose or read → map the error. Nothing else.

pub mod case;
pub mod cluster;
pub mod credit;
pub mod entity;
pub mod inspection;
pub mod item;
pub mod join;
pub mod raft;
pub mod sharing;
pub mod watch;
