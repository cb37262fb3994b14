//! The control socket: how other terminals watch and steer a run.
//!
//! The state database is opened by one process at a time, so while a run
//! is in progress its runner is the only one that can read it. The runner
//! serves a Unix socket (`control/control.sock` in the state directory, or
//! in a per-user directory when that path is too long; named in
//! `owner.json`) that answers `status`, `runs` and `logs`, streams the
//! run's events to `logs --follow`, and takes approvals, rejections and
//! cancellation. With no runner alive, commands read the database directly.
//!
//! Only the runner's own user, and root, may use the socket: it lives in a
//! directory nobody else can enter (see `socket`), and each connection's
//! peer is checked by the uid the kernel gives for it before its request is
//! read.
//!
//! The protocol is JSON lines: one [`Request`] per connection, answered by
//! one [`Response`] line, or, for [`Request::Follow`], by every event of the
//! run so far and then each new one until the run ends.
//!
//! A team server answers the same requests over HTTP (`remote`): a
//! [`Reach::Server`] is asked as a runner is. With the state in a shared
//! database, a process that cannot reach the owner's socket posts its
//! decision or cancel to the database, and the owner answers it (`posted`).

mod board;
mod client;
mod live;
mod posted;
mod protocol;
mod remote;
mod server;
mod socket;
mod upload;
#[cfg(test)]
mod tests;

pub use board::RunBoard;
pub use client::{ControlClient, Reach};
pub use protocol::{Cancelled, Request, Response, StateResources};
pub use remote::{normalize_url, segment, Followed, ServerClient, ServerError, CA_CERT_ENV};
pub use upload::{SourceUpload, UploadedComponent, UploadedFile};
pub use live::{answer, LiveRun, RunHandles};
pub use posted::{answer_posted, post_and_wait, ANSWER_WITHIN};
pub use server::ControlServer;
pub use socket::{ControlSocket, SocketError};
