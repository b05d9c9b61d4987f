//! Integration tests: the real `gantry` binary, serving on `127.0.0.1:0` from a temp data
//! dir, driven through its CLI and over HTTP. One test binary, so it links once.

mod harness;
mod logs_check;

mod auth;
mod bad_input;
mod changes;
mod detect;
mod detection;
mod events;
mod flags;
mod graphite_web;
mod incidents;
mod lifecycle;
mod limits;
mod logs;
mod metrics;
mod migrate;
mod migrate_jobs;
mod monitors;
mod notify;
mod peers;
mod postgres;
mod python_sdks;
mod scenario;
mod ship;
mod stream;
mod tidy;
