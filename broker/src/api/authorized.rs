//! KIP-430's authorized operations, shared by Metadata, DescribeCluster and DescribeGroups.
//!
//! A client that asks (`include_*_authorized_operations`) is told the operations it may perform on a
//! resource, as a bit field of Kafka's `AclOperation` codes. Strata has no authorizer yet, so every client may
//! do everything; a Kafka broker without an authorizer answers exactly that: every operation that ACLs know
//! for the resource type (Kafka's `AuthHelper.authorizedOperations` with no authorizer). A client that did not
//! ask gets the schema's default, `i32::MIN`, which clients read as "not provided".

/// The field's value when the client did not ask (Kafka's schema default).
pub const NOT_REQUESTED: i32 = i32::MIN;

/// Kafka's `AclOperation` codes.
const READ: u8 = 3;
const WRITE: u8 = 4;
const CREATE: u8 = 5;
const DELETE: u8 = 6;
const ALTER: u8 = 7;
const DESCRIBE: u8 = 8;
const CLUSTER_ACTION: u8 = 9;
const DESCRIBE_CONFIGS: u8 = 10;
const ALTER_CONFIGS: u8 = 11;
const IDEMPOTENT_WRITE: u8 = 12;

/// The resource types whose operations are reported (Kafka's `AclEntry.supportedOperations`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Topic,
    Group,
    Cluster,
}

impl Resource {
    fn operations(self) -> &'static [u8] {
        match self {
            Resource::Topic => &[
                READ,
                WRITE,
                CREATE,
                DESCRIBE,
                DELETE,
                ALTER,
                DESCRIBE_CONFIGS,
                ALTER_CONFIGS,
            ],
            Resource::Group => &[READ, DESCRIBE, DELETE],
            Resource::Cluster => &[
                CREATE,
                CLUSTER_ACTION,
                DESCRIBE_CONFIGS,
                ALTER_CONFIGS,
                IDEMPOTENT_WRITE,
                ALTER,
                DESCRIBE,
            ],
        }
    }
}

/// What to put in an authorized-operations field: [`NOT_REQUESTED`] unless `requested`, else every operation
/// of `resource` (no ACLs: everything is allowed).
pub fn operations(requested: bool, resource: Resource) -> i32 {
    if !requested {
        return NOT_REQUESTED;
    }
    resource
        .operations()
        .iter()
        .fold(0i32, |bits, &operation| bits | (1 << operation))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_fields_match_kafkas_without_an_authorizer() {
        assert_eq!(operations(false, Resource::Topic), i32::MIN);
        // What a Kafka 4 broker without an authorizer answers.
        assert_eq!(operations(true, Resource::Topic), 0b1101_1111_1000);
        assert_eq!(operations(true, Resource::Group), 0b1_0100_1000);
        assert_eq!(operations(true, Resource::Cluster), 0b1_1111_1010_0000);
    }
}
