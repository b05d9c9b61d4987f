//! Migrations run by the server (`gantry migrate apply|rebuild --via-server`): the rules for
//! submitting and controlling a job (`jobs`) and the executor that runs a database's jobs
//! while this server holds its lease (`executor`). The HTTP routes are in `api::migrate`.

pub mod executor;
pub mod jobs;
