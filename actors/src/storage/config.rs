//! What the storage writer is told when it is spawned: the file, the size of its queue and
//! how many commands it may group into one transaction.
//!
//! The config is the writer's immutable spec: a restart rebuilds every piece of writer
//! state from it and from nothing else.

use std::path::PathBuf;

use super::StorageError;

/// Default capacity of the writer's queue, in commands (a command is usually one batch).
pub const DEFAULT_QUEUE_CAPACITY: usize = 4096;

/// Default number of commands the writer groups into one transaction.
pub const DEFAULT_MAX_BATCH_COMMANDS: usize = 512;

/// Settings of the storage writer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageConfig {
    /// The SQLite file. Created (mode 0600 on Unix) when missing.
    pub path: PathBuf,
    /// How many commands may wait for the writer before `store()` starts dropping.
    /// Default [`DEFAULT_QUEUE_CAPACITY`]; must be at least 1.
    pub queue_capacity: usize,
    /// How many commands the writer writes in one transaction at most.
    /// Default [`DEFAULT_MAX_BATCH_COMMANDS`]; must be at least 1.
    pub max_batch_commands: usize,
}

impl StorageConfig {
    /// A config for the file at `path`, with the default queue capacity and batch size.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StorageConfig {
            path: path.into(),
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            max_batch_commands: DEFAULT_MAX_BATCH_COMMANDS,
        }
    }

    /// Sets the queue capacity in commands (default [`DEFAULT_QUEUE_CAPACITY`]).
    pub fn queue_capacity(mut self, commands: usize) -> Self {
        self.queue_capacity = commands;
        self
    }

    /// Sets the most commands written per transaction (default
    /// [`DEFAULT_MAX_BATCH_COMMANDS`]).
    pub fn max_batch_commands(mut self, commands: usize) -> Self {
        self.max_batch_commands = commands;
        self
    }

    /// Checks the settings that have a lower bound.
    pub(super) fn validate(&self) -> Result<(), StorageError> {
        for (setting, value) in [
            ("queue_capacity", self.queue_capacity),
            ("max_batch_commands", self.max_batch_commands),
        ] {
            if value == 0 {
                return Err(StorageError::InvalidConfig { setting, value });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults are the documented constants, and the setters override them.
    #[test]
    fn defaults_and_setters() {
        let c = StorageConfig::new("/tmp/x.db");
        assert_eq!(c.queue_capacity, DEFAULT_QUEUE_CAPACITY);
        assert_eq!(c.max_batch_commands, DEFAULT_MAX_BATCH_COMMANDS);
        let c = c.queue_capacity(7).max_batch_commands(3);
        assert_eq!((c.queue_capacity, c.max_batch_commands), (7, 3));
        assert!(c.validate().is_ok());
    }

    /// A zero capacity or batch size is refused with a message naming the setting.
    #[test]
    fn zero_settings_are_refused() {
        let err = StorageConfig::new("x.db")
            .queue_capacity(0)
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("queue_capacity = 0"), "{err}");
        let err = StorageConfig::new("x.db")
            .max_batch_commands(0)
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("max_batch_commands = 0"), "{err}");
    }
}
