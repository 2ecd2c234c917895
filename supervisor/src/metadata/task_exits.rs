//! Exits of tasks whose shim is gone: what a dead shim's container ended with, kept until the
//! task is deleted, so a client still learns it (a restarted berthd, a SIGKILLed shim).

use serde::{Deserialize, Serialize};

use super::MetadataStore;
use super::records::{RecordTable, get_in, put_in};
use crate::error::Result;

const TASK_EXITS: RecordTable = RecordTable::new("task_exits");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskExitRecord {
    pub pid: u32,
    pub exit_status: u32,
    /// Nanoseconds since the epoch.
    pub exited_at: i64,
    /// Why it ended, when berth knows more than the status says (`shim died`).
    pub reason: String,
}

impl MetadataStore {
    pub fn record_task_exit(&self, namespace: &str, id: &str, exit: &TaskExitRecord) -> Result<()> {
        self.write(|txn| {
            let mut table = txn.open_table(TASK_EXITS)?;
            put_in(&mut table, namespace, id, exit)
        })
    }

    pub fn task_exit(&self, namespace: &str, id: &str) -> Result<Option<TaskExitRecord>> {
        self.read_record(TASK_EXITS, namespace, id)
    }

    pub fn task_exits(&self, namespace: &str) -> Result<Vec<(String, TaskExitRecord)>> {
        Ok(self.read_records(TASK_EXITS, Some(namespace))?.into_iter().map(|(_, id, r)| (id, r)).collect())
    }

    /// Removes and returns a recorded exit.
    pub fn take_task_exit(&self, namespace: &str, id: &str) -> Result<Option<TaskExitRecord>> {
        self.write(|txn| {
            let mut table = txn.open_table(TASK_EXITS)?;
            let exit = get_in::<TaskExitRecord>(&table, namespace, id)?;
            if exit.is_some() {
                table.remove((namespace, id))?;
            }
            Ok(exit)
        })
    }
}
