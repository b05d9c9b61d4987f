//! Graphite's wire formats and query language, as pure parsers:
//! - [`plaintext`]: carbon's `path value timestamp` lines, tagged paths included;
//! - [`pickle`]: carbon's pickle frames, decoding only lists, tuples, strings and numbers;
//! - [`target`]: graphite-web's render target grammar (paths with globs, nested calls,
//!   pipes, `seriesByTag`);
//! - [`queue`]: the segment files of a forward queue (plaintext lines waiting to be sent).
//!
//! Invariant: no I/O and no evaluation. Receivers (sockets) and the render engine (storage,
//! functions) live elsewhere; errors here say what was wrong and where.

pub mod pickle;
pub mod plaintext;
pub mod queue;
pub mod tags;
pub mod target;
