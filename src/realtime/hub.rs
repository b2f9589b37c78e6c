//! Which sockets hold which session, and delivery to all of them. A session may have several
//! live sockets (two tabs); every event goes to each. Frames are encoded once and shared.
//! A socket that cannot keep up is dropped from the hub (its task then closes it); the store
//! still has every message, so the visitor catches up on reconnect.
//!
//! On a clustered node every frame also goes to the other nodes (the cluster's bus), since
//! the session's other sockets may be there; frames from them come in through
//! [`Hub::deliver_here`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::mpsc;

use crate::cluster::{Bus, Event};

/// Frames queued per socket before it counts as too slow.
pub const SOCKET_QUEUE: usize = 64;

/// Outgoing frames of one socket.
pub type Outbox = mpsc::Sender<Arc<str>>;

#[derive(Default)]
struct Inner {
    sessions: Mutex<HashMap<i64, Vec<(u64, Outbox)>>>,
    next_socket: AtomicU64,
    /// Set once at start-up on a clustered node.
    bus: OnceLock<Bus>,
}

/// The session hub: this node's sockets, and the other nodes' through the bus.
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
    /// Sends this hub's frames to the other nodes through `bus` from now on.
    pub fn attach(&self, bus: Bus) {
        let _ = self.inner.bus.set(bus);
    }

    fn publish(&self, session: i64, frame: &Arc<str>, lossy: bool) {
        if let Some(bus) = self.inner.bus.get() {
            bus.publish(&Event::Frame { session, lossy, frame: frame.clone() });
        }
    }

    /// Registers a socket for a session.
    pub fn join(&self, session: i64, outbox: Outbox) -> Membership {
        let socket = self.inner.next_socket.fetch_add(1, Ordering::Relaxed);
        self.inner.sessions.lock().expect("hub lock").entry(session).or_default().push((socket, outbox));
        Membership { hub: self.clone(), session, socket }
    }

    /// Sends a frame to every socket of a session, here and on the other nodes; returns how
    /// many of this node's sockets got it.
    pub fn send(&self, session: i64, frame: &Arc<str>) -> usize {
        self.publish(session, frame, false);
        self.send_here(session, frame)
    }

    /// A frame from another node, for this node's sockets of `session`.
    pub fn deliver_here(&self, session: i64, frame: &Arc<str>, lossy: bool) {
        if lossy {
            self.send_lossy_here(session, frame);
        } else {
            self.send_here(session, frame);
        }
    }

    fn send_here(&self, session: i64, frame: &Arc<str>) -> usize {
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
        self.publish(session, frame, true);
        self.send_lossy_here(session, frame);
    }

    fn send_lossy_here(&self, session: i64, frame: &Arc<str>) {
        let sessions = self.inner.sessions.lock().expect("hub lock");
        for (_, outbox) in sessions.get(&session).into_iter().flatten() {
            let _ = outbox.try_send(frame.clone());
        }
    }

    /// Sends a frame to every socket of every session on this node (e.g. "reconnect" on
    /// shutdown).
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
