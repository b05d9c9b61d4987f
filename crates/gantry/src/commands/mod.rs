//! One module per command group: each turns parsed arguments into client or server calls
//! and prints the result.

pub mod alert;
pub mod change;
pub mod collect;
pub mod detect;
pub mod flag;
pub mod incident;
pub mod metrics;
pub mod migrate;
pub mod monitor;
pub mod report;
pub mod server;
pub mod service;
pub mod ship;
pub mod token;
