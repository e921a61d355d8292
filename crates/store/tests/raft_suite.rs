//! openraft's storage conformance suite against the RocksDB store.

use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};
use tempfile::TempDir;
use veritrail_store::{LogStore, StateMachine, Store, StoreConfig, TypeConfig};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = TempDir::new().expect("temp dir");
        let store =
            Store::open(dir.path(), &StoreConfig::new("suite.example/log")).expect("store opens");
        Ok((dir, store.log, store.state_machine))
    }
}

/// The suite starts its own runtimes, so this is a plain test.
#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).expect("the store passes openraft's storage suite");
}
