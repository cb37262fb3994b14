//! The control socket: how other terminals watch and steer a run.
//!
//! The state database is opened by one process at a time, so while a run
//! is in progress its runner is the only one that can read it. The runner
//! serves a Unix socket (`control.sock` in the state directory, named in
//! `owner.json`) that answers `status`, `runs` and `logs`, streams the
//! run's events to `logs --follow`, and takes approvals, rejections and
//! cancellation. With no runner alive, commands read the database directly.
//!
//! The protocol is JSON lines: one [`Request`] per connection, answered by
//! one [`Response`] line, or, for [`Request::Follow`], by every event of the
//! run so far and then each new one until the run ends.

mod board;
mod client;
mod protocol;
mod server;

pub use board::RunBoard;
pub use client::{ControlClient, Reach};
pub use protocol::{Request, Response};
pub use server::ControlServer;
