//! Which process an exit ends: the pure part of exit handling, unit-tested without root.
//!
//! The reaper reports every exit by pid. A pid is known once its process is registered (the
//! init at Create, an exec once `runc exec` returned its pid); an exit that comes first (an
//! exec that died before `runc exec` even returned) is kept as an orphan, bounded, and
//! replayed when that pid is registered. A process whose Start is in flight holds its exit back
//! until the start is reported (the caller keeps that exit and hands it to [`Pids::started`]).

use std::collections::{HashMap, VecDeque};

use crate::reaper::Exit;

/// A process: (container id, exec id; empty for the init).
pub(super) type ProcessKey = (String, String);

pub(super) struct Pids {
    running: HashMap<u32, ProcessKey>,
    orphans: VecDeque<Exit>,
    max_orphans: usize,
}

impl Pids {
    pub(super) fn new(max_orphans: usize) -> Self {
        Pids { running: HashMap::new(), orphans: VecDeque::new(), max_orphans }
    }

    /// The process `exit` ends, when its pid is known (it stays registered until
    /// [`Pids::forget`]); otherwise the exit is kept as an orphan (the oldest dropped past the
    /// bound) and `None` is returned.
    pub(super) fn exited(&mut self, exit: Exit) -> Option<ProcessKey> {
        if let Some(key) = self.running.get(&(exit.pid as u32)) {
            return Some(key.clone());
        }
        if self.orphans.len() >= self.max_orphans {
            self.orphans.pop_front();
        }
        self.orphans.push_back(exit);
        None
    }

    pub(super) fn forget(&mut self, pid: u32) {
        self.running.remove(&pid);
    }

    /// Forgets every pid of container `id` (it was deleted).
    pub(super) fn forget_container(&mut self, id: &str) {
        self.running.retain(|_, (container, _)| container != id);
    }

    /// Process `key` runs as `pid` now that its start is reported. Returns the exit to handle
    /// right away: the one held back during the start (`deferred`), else an orphan exit of
    /// that pid; with none, the pid is registered for the exit to come.
    pub(super) fn started(&mut self, key: ProcessKey, pid: u32, deferred: Option<Exit>) -> Option<Exit> {
        let orphan = || {
            let i = self.orphans.iter().position(|o| o.pid as u32 == pid)?;
            self.orphans.remove(i)
        };
        let exit = deferred.or_else(orphan);
        match exit {
            Some(_) => {
                self.running.remove(&pid);
            }
            None => {
                self.running.insert(pid, key);
            }
        }
        exit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn exit(pid: i32, status: i32) -> Exit {
        Exit { pid, status, at: SystemTime::UNIX_EPOCH }
    }

    fn key(container: &str, exec: &str) -> ProcessKey {
        (container.to_string(), exec.to_string())
    }

    #[test]
    fn an_exit_before_its_pid_is_known_is_replayed_when_it_starts() {
        let mut pids = Pids::new(8);
        assert_eq!(pids.exited(exit(42, 3)), None, "not known yet: kept");
        let replayed = pids.started(key("c1", "e1"), 42, None).unwrap();
        assert_eq!((replayed.pid, replayed.status), (42, 3));
        // Handled: not registered, and not replayed twice.
        assert_eq!(pids.exited(exit(42, 0)), None);
        assert_eq!(pids.started(key("c1", "e2"), 7, None), None);
    }

    #[test]
    fn a_known_pid_names_its_process_until_forgotten() {
        let mut pids = Pids::new(8);
        assert_eq!(pids.started(key("c1", ""), 10, None), None);
        assert_eq!(pids.started(key("c1", "e1"), 11, None), None);
        assert_eq!(pids.exited(exit(11, 0)), Some(key("c1", "e1")));
        assert_eq!(pids.exited(exit(10, 0)), Some(key("c1", "")));
        pids.forget(11);
        assert_eq!(pids.exited(exit(11, 0)), None, "forgotten: an orphan now");
        pids.forget_container("c1");
        assert_eq!(pids.exited(exit(10, 0)), None);
    }

    #[test]
    fn an_exit_held_during_start_wins_over_an_orphan() {
        let mut pids = Pids::new(8);
        pids.exited(exit(5, 1));
        let handled = pids.started(key("c1", ""), 5, Some(exit(5, 9))).unwrap();
        assert_eq!(handled.status, 9);
        assert_eq!(pids.exited(exit(5, 0)), None, "not registered");
    }

    #[test]
    fn orphans_are_bounded_oldest_first() {
        let mut pids = Pids::new(2);
        for pid in 1..=3 {
            pids.exited(exit(pid, pid));
        }
        assert_eq!(pids.started(key("c", "a"), 1, None), None, "the oldest was dropped");
        assert_eq!(pids.started(key("c", "b"), 3, None).map(|e| e.status), Some(3));
    }
}
