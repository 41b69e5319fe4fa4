//! openraft's own storage test suite (`openraft::testing::log::Suite`) against the on-disk log store and the
//! state machine, each run in a fresh temporary directory.

use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;
use openraft::{ErrorSubject, ErrorVerb};
use strata_controller::types::StorageError;
use strata_controller::{LogStore, StateMachine, TypeConfig};
use tempfile::TempDir;

/// Builds a store and a state machine sharing a temporary directory, which the guard removes.
struct TempDirBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for TempDirBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError> {
        let io_error = |e: std::io::Error| StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Read, e);
        let dir = tempfile::tempdir().map_err(io_error)?;
        let log = LogStore::open(dir.path()).map_err(|e| io_error(std::io::Error::other(e)))?;
        let sm = StateMachine::open(dir.path()).map_err(|e| io_error(e.into()))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    TypeConfig::run(async {
        Suite::test_all(TempDirBuilder).await.expect("openraft storage suite");
    });
}
