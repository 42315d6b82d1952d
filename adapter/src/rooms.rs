//! The in-memory room index of upstream `Adapter`: rooms → sockets and
//! sockets → rooms, both in insertion order, and the matching of
//! [`Opts`](crate::Opts) against them.
//!
//! Matching (upstream `apply` plus socketioxide's `sid` rule):
//! 1. sockets in any `except` room are skipped, and so is `sid` when the
//!    `broadcast` flag is set;
//! 2. with rooms: every member of every room, in room order then join order,
//!    each socket once;
//! 3. without rooms: `sid` alone if it is set and `broadcast` is not, else
//!    every socket.

use std::hash::{BuildHasherDefault, DefaultHasher};

use indexmap::{IndexMap, IndexSet};

use crate::types::{NodeId, Opts, SocketInfo};

/// A fixed-key hasher: the same input gives the same order on every build.
type Fixed = BuildHasherDefault<DefaultHasher>;
type Map<K, V> = IndexMap<K, V, Fixed>;
type Set<T> = IndexSet<T, Fixed>;

#[derive(Debug, Default)]
struct SocketEntry {
    rooms: Set<String>,
    handshake: Vec<u8>,
    data: Vec<u8>,
}

/// Rooms and their sockets for one namespace on one node.
#[derive(Debug, Default)]
pub struct RoomIndex {
    rooms: Map<String, Set<String>>,
    sids: Map<String, SocketEntry>,
}

impl RoomIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the socket (if new) to each room (upstream `addAll`).
    pub fn add_all<S: AsRef<str>>(&mut self, sid: &str, rooms: &[S]) {
        let entry = self.sids.entry(sid.to_owned()).or_default();
        for room in rooms {
            let room = room.as_ref();
            entry.rooms.insert(room.to_owned());
            self.rooms
                .entry(room.to_owned())
                .or_default()
                .insert(sid.to_owned());
        }
    }

    /// Removes the socket from one room; the socket stays known (upstream `del`).
    pub fn del(&mut self, sid: &str, room: &str) {
        if let Some(entry) = self.sids.get_mut(sid) {
            entry.rooms.shift_remove(room);
        }
        self.del_member(room, sid);
    }

    fn del_member(&mut self, room: &str, sid: &str) {
        if let Some(members) = self.rooms.get_mut(room) {
            members.shift_remove(sid);
            if members.is_empty() {
                self.rooms.shift_remove(room);
            }
        }
    }

    /// Forgets the socket and leaves all its rooms (upstream `delAll`).
    pub fn del_all(&mut self, sid: &str) {
        if let Some(entry) = self.sids.shift_remove(sid) {
            for room in &entry.rooms {
                self.del_member(room, sid);
            }
        }
    }

    /// Stores the socket's handshake and data for fetch-sockets.
    pub fn set_info(&mut self, sid: &str, handshake: Vec<u8>, data: Vec<u8>) {
        let entry = self.sids.entry(sid.to_owned()).or_default();
        entry.handshake = handshake;
        entry.data = data;
    }

    /// The socket's rooms, or `None` if the socket is unknown.
    pub fn socket_rooms(&self, sid: &str) -> Option<Vec<String>> {
        self.sids
            .get(sid)
            .map(|e| e.rooms.iter().cloned().collect())
    }

    /// Members of a room, in join order.
    pub fn room_members(&self, room: &str) -> Vec<String> {
        self.rooms
            .get(room)
            .map(|m| m.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Number of known sockets.
    pub fn socket_count(&self) -> usize {
        self.sids.len()
    }

    /// Number of non-empty rooms.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Sockets matched by the options, each once, in delivery order.
    pub fn matching(&self, opts: &Opts) -> Vec<String> {
        let mut except: Set<&str> = Set::default();
        for room in &opts.except {
            if let Some(members) = self.rooms.get(room) {
                except.extend(members.iter().map(String::as_str));
            }
        }
        if opts.flags.broadcast
            && let Some(sid) = &opts.sid
        {
            except.insert(sid);
        }
        let mut out = Vec::new();
        if !opts.rooms.is_empty() {
            let mut seen: Set<&str> = Set::default();
            for room in &opts.rooms {
                let Some(members) = self.rooms.get(room) else {
                    continue;
                };
                for sid in members {
                    if !except.contains(sid.as_str()) && seen.insert(sid) {
                        out.push(sid.clone());
                    }
                }
            }
        } else if let (Some(sid), false) = (&opts.sid, opts.flags.broadcast) {
            if self.sids.contains_key(sid) && !except.contains(sid.as_str()) {
                out.push(sid.clone());
            }
        } else {
            out.extend(
                self.sids
                    .keys()
                    .filter(|sid| !except.contains(sid.as_str()))
                    .cloned(),
            );
        }
        out
    }

    /// Matched sockets with their rooms, handshake and data.
    pub fn infos(&self, opts: &Opts, node: NodeId) -> Vec<SocketInfo> {
        self.matching(opts)
            .into_iter()
            .filter_map(|id| {
                let entry = self.sids.get(&id)?;
                Some(SocketInfo {
                    rooms: entry.rooms.iter().cloned().collect(),
                    handshake: entry.handshake.clone(),
                    data: entry.data.clone(),
                    node,
                    id,
                })
            })
            .collect()
    }

    /// Union of the rooms of the matched sockets, in first-seen order.
    pub fn rooms_of(&self, opts: &Opts) -> Vec<String> {
        let mut out: Set<String> = Set::default();
        for sid in self.matching(opts) {
            if let Some(entry) = self.sids.get(&sid) {
                out.extend(entry.rooms.iter().cloned());
            }
        }
        out.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> RoomIndex {
        let mut i = RoomIndex::new();
        i.add_all("s1", &["r1", "r2"]);
        i.add_all("s2", &["r2", "r3"]);
        i.add_all("s3", &["r3"]);
        i
    }

    #[test]
    fn add_and_remove_sockets() {
        let mut i = RoomIndex::new();
        i.add_all("s1", &["r1", "r2"]);
        assert_eq!(i.room_members("r1"), ["s1"]);
        i.del("s1", "r1");
        assert!(i.room_members("r1").is_empty());
        assert_eq!(i.room_count(), 1, "an empty room is deleted");
        assert_eq!(i.socket_rooms("s1"), Some(vec!["r2".to_string()]));
        i.del("s1", "r1"); // twice is harmless
        i.del_all("s1");
        assert_eq!(i.socket_rooms("s1"), None);
        assert_eq!(i.room_count(), 0);
    }

    #[test]
    fn lists_sockets_and_rooms() {
        let i = index();
        assert_eq!(i.matching(&Opts::all()).len(), 3);
        assert_eq!(i.matching(&Opts::rooms(["r2"])), ["s1", "s2"]);
        assert!(i.matching(&Opts::rooms(["r4"])).is_empty());
        assert_eq!(i.socket_rooms("s2").map(|r| r.len()), Some(2));
        assert_eq!(i.socket_rooms("unknown"), None);
    }

    #[test]
    fn except_rooms() {
        let i = index();
        assert_eq!(i.matching(&Opts::all().except(["r1"])), ["s2", "s3"]);
        assert_eq!(i.matching(&Opts::rooms(["r3"]).except(["r2"])), ["s3"]);
    }

    #[test]
    fn no_duplicate_delivery_across_rooms() {
        let i = index();
        assert_eq!(
            i.matching(&Opts::rooms(["r2", "r3", "r1"])),
            ["s1", "s2", "s3"]
        );
    }

    #[test]
    fn broadcast_flag_excludes_sender_and_sid_alone_targets_one() {
        let i = index();
        let mut o = Opts::all();
        o.sid = Some("s2".into());
        assert_eq!(i.matching(&o), ["s2"]);
        o.flags.broadcast = true;
        assert_eq!(i.matching(&o), ["s1", "s3"]);
        o.rooms = vec!["r2".into()];
        assert_eq!(i.matching(&o), ["s1"]);
    }

    #[test]
    fn rooms_of_matched_sockets() {
        let i = index();
        assert_eq!(i.rooms_of(&Opts::rooms(["r1"])), ["r1", "r2"]);
        assert_eq!(i.rooms_of(&Opts::all()), ["r1", "r2", "r3"]);
    }
}
