//! How broadcasts reach connections, below both the groups that make them and the
//! connections that write them.
//!
//! - `thread_inbox`: one inbox per worker thread; a broadcast crosses to each thread with
//!   members once, and the inbox's task hands it to that thread's members.
//! - `subscriber`: one per connection: the broadcasts handed to it, taken on its next
//!   turn, and the groups it is in (as [`Joined`] handles), left when it ends.
//!
//! Knows nothing of groups, ids or actors.

mod subscriber;
mod thread_inbox;

pub(crate) use subscriber::{lock, Answer, Joined, Leaving, Pending, Subscriber};
pub(crate) use thread_inbox::{Op, ThreadInbox};
