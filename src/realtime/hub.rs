//! Which sockets hold which session, and delivery to all of them. A session may have several
//! live sockets (two tabs); every event goes to each. Frames are encoded once and shared.
//! A socket that cannot keep up is dropped from the hub (its task then closes it); the store
//! still has every message, so the visitor catches up on reconnect.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

/// Frames queued per socket before it counts as too slow.
pub const SOCKET_QUEUE: usize = 64;

/// Outgoing frames of one socket.
pub type Outbox = mpsc::Sender<Arc<str>>;

#[derive(Default)]
struct Inner {
    sessions: Mutex<HashMap<i64, Vec<(u64, Outbox)>>>,
    next_socket: AtomicU64,
}

/// The in-process session hub (a Redis fan-out plugs in behind it for several nodes).
#[derive(Clone, Default)]
pub struct Hub {
    inner: Arc<Inner>,
}

/// A socket's place in the hub; leaving happens on drop.
pub struct Membership {
    hub: Hub,
    session: i64,
    socket: u64,
}

impl Drop for Membership {
    fn drop(&mut self) {
        let mut sessions = self.hub.inner.sessions.lock().expect("hub lock");
        if let Some(sockets) = sessions.get_mut(&self.session) {
            sockets.retain(|(id, _)| *id != self.socket);
            if sockets.is_empty() {
                sessions.remove(&self.session);
            }
        }
    }
}

impl Hub {
    /// Registers a socket for a session.
    pub fn join(&self, session: i64, outbox: Outbox) -> Membership {
        let socket = self.inner.next_socket.fetch_add(1, Ordering::Relaxed);
        self.inner.sessions.lock().expect("hub lock").entry(session).or_default().push((socket, outbox));
        Membership { hub: self.clone(), session, socket }
    }

    /// Sends a frame to every socket of a session; returns how many got it.
    pub fn send(&self, session: i64, frame: &Arc<str>) -> usize {
        let mut sessions = self.inner.sessions.lock().expect("hub lock");
        let Some(sockets) = sessions.get_mut(&session) else { return 0 };
        sockets.retain(|(_, outbox)| outbox.try_send(frame.clone()).is_ok());
        let delivered = sockets.len();
        if sockets.is_empty() {
            sessions.remove(&session);
        }
        delivered
    }

    /// Sends a frame that may be lost to every socket of a session: a socket whose queue is
    /// full skips it instead of being dropped (streamed pieces of an answer, which the stored
    /// message replaces).
    pub fn send_lossy(&self, session: i64, frame: &Arc<str>) {
        let sessions = self.inner.sessions.lock().expect("hub lock");
        for (_, outbox) in sessions.get(&session).into_iter().flatten() {
            let _ = outbox.try_send(frame.clone());
        }
    }

    /// Sends a frame to every socket of every session (e.g. "reconnect" on shutdown).
    pub fn send_all(&self, frame: &Arc<str>) {
        let sessions = self.inner.sessions.lock().expect("hub lock");
        for (_, outbox) in sessions.values().flatten() {
            let _ = outbox.try_send(frame.clone());
        }
    }

    /// Number of sessions with at least one live socket.
    pub fn sessions(&self) -> usize {
        self.inner.sessions.lock().expect("hub lock").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_socket_of_a_session_gets_the_frame() {
        let hub = Hub::default();
        let (a, mut ra) = mpsc::channel(4);
        let (b, mut rb) = mpsc::channel(4);
        let ma = hub.join(1, a);
        let _mb = hub.join(1, b);
        assert_eq!(hub.send(1, &Arc::from("x")), 2);
        assert_eq!(&*ra.recv().await.unwrap(), "x");
        assert_eq!(&*rb.recv().await.unwrap(), "x");
        drop(ma);
        assert_eq!(hub.send(1, &Arc::from("y")), 1);
        assert_eq!(hub.send(2, &Arc::from("z")), 0);
    }
}
