//! Live changes for open pages: an in-process broadcast of the topics of what committed
//! ([`firebreak_store::change_topics`]): this process's commits on either backend, and on
//! PostgreSQL other nodes' commits relayed from `LISTEN`. Topics name kinds of change, never
//! content; subscribers re-read with their own user's visibility. Must not block a commit: a
//! publish is a non-blocking send, and a subscriber that falls behind hears `*`.
//!
//! A page read before its stream subscribes could miss a change made in between: the page
//! carries a [`Live::mark`] taken before it read anything, and a stream opened with an older
//! mark (or another process's) starts with `*`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::broadcast;

/// Announcements held for a slow subscriber before it is told `*` instead.
pub const CAPACITY: usize = 256;

/// The sending side, one per process (shared by the `App`'s clones).
pub struct Live {
    tx: broadcast::Sender<Arc<str>>,
    /// Names this process in marks.
    epoch: u64,
    /// Moves before every publish, and on every commit while no one listens.
    seq: AtomicU64,
}

impl Default for Live {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(CAPACITY).0,
            epoch: rand::random(),
            seq: AtomicU64::new(0),
        }
    }
}

impl Live {
    /// Whether anyone listens: a commit computes its topics only then.
    pub fn wanted(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Tells every subscriber (comma-joined topics; empty is nothing).
    pub fn publish(&self, topics: &str) {
        if !topics.is_empty() {
            self.seq.fetch_add(1, Ordering::SeqCst);
            // no subscriber is not an error
            let _ = self.tx.send(Arc::from(topics));
        }
    }

    /// A commit no one listened to (its topics were not computed): marks taken before it are
    /// older.
    pub fn bump(&self) {
        self.seq.fetch_add(1, Ordering::SeqCst);
    }

    /// Where the announcements stand: `<process>.<count>`.
    pub fn mark(&self) -> String {
        format!("{:x}.{}", self.epoch, self.seq.load(Ordering::SeqCst))
    }

    /// Subscribes; `missed` says whether anything was announced since `since` (a [`Live::mark`];
    /// another process's mark, or none, counts as missed).
    pub fn subscribe_since(&self, since: Option<&str>) -> (Subscription, bool) {
        // subscribed before the mark is read: a publish that the read does not see is heard
        let sub = Subscription(self.tx.subscribe());
        let missed = since != Some(self.mark().as_str());
        (sub, missed)
    }

    pub fn subscribe(&self) -> Subscription {
        Subscription(self.tx.subscribe())
    }
}

/// One listener's view of the broadcast.
pub struct Subscription(broadcast::Receiver<Arc<str>>);

impl Subscription {
    /// The next announcement's topics (comma-joined), `*` after announcements were missed (the
    /// subscriber lagged more than [`CAPACITY`] behind); `None` when the process is ending.
    pub async fn recv(&mut self) -> Option<Arc<str>> {
        match self.0.recv().await {
            Ok(t) => Some(t),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(Arc::from("*")),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lagging_subscriber_hears_anything_changed() {
        let live = Live::default();
        assert!(!live.wanted());
        live.publish("tickets");
        let mut sub = live.subscribe();
        assert!(live.wanted());
        live.publish("");
        live.publish("events");
        assert_eq!(sub.recv().await.as_deref(), Some("events"));
        for _ in 0..CAPACITY + 1 {
            live.publish("events");
        }
        assert_eq!(sub.recv().await.as_deref(), Some("*"));
        drop(live);
        // what was still held, then the end
        let mut n = 0;
        while sub.recv().await.is_some() {
            n += 1;
        }
        assert_eq!(n, CAPACITY);
    }

    #[test]
    fn a_stream_opened_after_a_change_since_its_page_was_read_knows_it() {
        let live = Live::default();
        let page = live.mark();
        assert!(!live.subscribe_since(Some(&page)).1);
        assert!(live.subscribe_since(None).1);
        assert!(live.subscribe_since(Some("0.0")).1);
        // nobody listening: the commit only moves the mark
        live.bump();
        assert!(live.subscribe_since(Some(&page)).1);
        let page = live.mark();
        live.publish("");
        assert!(!live.subscribe_since(Some(&page)).1);
        live.publish("tickets");
        assert!(live.subscribe_since(Some(&page)).1);
    }
}
