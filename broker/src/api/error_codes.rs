//! Every error code a response carries, for `strata_request_errors_total` (Kafka's ErrorsPerSec, which
//! counts a response's `errorCounts()`): the top-level code and each topic's, partition's, group's or
//! resource's, wherever the response has one. Codes of 0 are reported too; the caller skips them.
//!
//! Responses come in a few shapes, and the tests take one API of each shape; they also check that every
//! API of [`super::SUPPORTED`] has a sample, so an API added there without its arm here fails a test.

use kafka_protocol::messages::ResponseKind;

/// Calls `each` with every error code in `response`.
pub fn error_codes(response: &ResponseKind, mut each: impl FnMut(i16)) {
    match response {
        // Top-level code only.
        ResponseKind::ApiVersions(r) => each(r.error_code),
        ResponseKind::DescribeCluster(r) => each(r.error_code),
        ResponseKind::InitProducerId(r) => each(r.error_code),
        ResponseKind::JoinGroup(r) => each(r.error_code),
        ResponseKind::SyncGroup(r) => each(r.error_code),
        ResponseKind::Heartbeat(r) => each(r.error_code),
        ResponseKind::ListGroups(r) => each(r.error_code),
        ResponseKind::ShareGroupHeartbeat(r) => each(r.error_code),
        ResponseKind::ConsumerGroupHeartbeat(r) => each(r.error_code),
        // Per topic.
        ResponseKind::CreateTopics(r) => r.topics.iter().for_each(|t| each(t.error_code)),
        ResponseKind::DeleteTopics(r) => r.responses.iter().for_each(|t| each(t.error_code)),
        ResponseKind::CreatePartitions(r) => r.results.iter().for_each(|t| each(t.error_code)),
        // Per resource or group.
        ResponseKind::DescribeConfigs(r) => r.results.iter().for_each(|c| each(c.error_code)),
        ResponseKind::AlterConfigs(r) => r.responses.iter().for_each(|c| each(c.error_code)),
        ResponseKind::IncrementalAlterConfigs(r) => r.responses.iter().for_each(|c| each(c.error_code)),
        ResponseKind::DescribeGroups(r) => r.groups.iter().for_each(|g| each(g.error_code)),
        ResponseKind::DeleteGroups(r) => r.results.iter().for_each(|g| each(g.error_code)),
        ResponseKind::ShareGroupDescribe(r) => r.groups.iter().for_each(|g| each(g.error_code)),
        ResponseKind::ConsumerGroupDescribe(r) => r.groups.iter().for_each(|g| each(g.error_code)),
        // Top level, then each coordinator or member.
        ResponseKind::FindCoordinator(r) => {
            each(r.error_code);
            r.coordinators.iter().for_each(|c| each(c.error_code));
        }
        ResponseKind::LeaveGroup(r) => {
            each(r.error_code);
            r.members.iter().for_each(|m| each(m.error_code));
        }
        // Per partition of each topic.
        ResponseKind::Produce(r) => r
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .for_each(|p| each(p.error_code)),
        ResponseKind::ListOffsets(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| each(p.error_code)),
        ResponseKind::DeleteRecords(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| each(p.error_code)),
        ResponseKind::OffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| each(p.error_code)),
        ResponseKind::OffsetForLeaderEpoch(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| each(p.error_code)),
        ResponseKind::ReadShareGroupState(r) => r
            .results
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| each(p.error_code)),
        ResponseKind::WriteShareGroupState(r) => r
            .results
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| each(p.error_code)),
        // Top level, then per partition of each topic.
        ResponseKind::Fetch(r) => {
            each(r.error_code);
            r.responses
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| each(p.error_code));
        }
        ResponseKind::OffsetDelete(r) => {
            each(r.error_code);
            r.topics
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| each(p.error_code));
        }
        ResponseKind::ShareFetch(r) => {
            each(r.error_code);
            for p in r.responses.iter().flat_map(|t| &t.partitions) {
                each(p.error_code);
                each(p.acknowledge_error_code);
            }
        }
        ResponseKind::ShareAcknowledge(r) => {
            each(r.error_code);
            r.responses
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| each(p.error_code));
        }
        ResponseKind::AlterShareGroupOffsets(r) => {
            each(r.error_code);
            r.responses
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| each(p.error_code));
        }
        ResponseKind::DescribeQuorum(r) => {
            each(r.error_code);
            r.topics
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| each(p.error_code));
        }
        // Top level, each topic, each partition.
        ResponseKind::Metadata(r) => {
            each(r.error_code);
            for topic in &r.topics {
                each(topic.error_code);
                topic.partitions.iter().for_each(|p| each(p.error_code));
            }
        }
        ResponseKind::DeleteShareGroupOffsets(r) => {
            each(r.error_code);
            r.responses.iter().for_each(|t| each(t.error_code));
        }
        // Groups, each with its topics' partitions; OffsetFetch before v8 has one group at the top level.
        ResponseKind::OffsetFetch(r) => {
            each(r.error_code);
            r.topics
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| each(p.error_code));
            for group in &r.groups {
                each(group.error_code);
                group
                    .topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .for_each(|p| each(p.error_code));
            }
        }
        ResponseKind::DescribeShareGroupOffsets(r) => {
            for group in &r.groups {
                each(group.error_code);
                group
                    .topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .for_each(|p| each(p.error_code));
            }
        }
        // Not in SUPPORTED: never answered.
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::*;

    use super::*;

    fn codes(response: &ResponseKind) -> Vec<i16> {
        let mut found = Vec::new();
        error_codes(response, |code| found.push(code));
        found.retain(|code| *code != 0);
        found.sort_unstable();
        found
    }

    /// One response of every supported API with errors in it, and the codes each carries.
    fn samples() -> Vec<(ApiKey, ResponseKind, Vec<i16>)> {
        use kafka_protocol::messages::alter_configs_response as alter;
        use kafka_protocol::messages::{
            alter_share_group_offsets_response as alter_share, consumer_group_describe_response as cg_describe,
            create_partitions_response as create_partitions, create_topics_response as create_topics,
            delete_groups_response as delete_groups, delete_records_response as delete_records,
            delete_share_group_offsets_response as delete_share, delete_topics_response as delete_topics,
            describe_configs_response as describe_configs, describe_groups_response as describe_groups,
            describe_quorum_response as quorum, describe_share_group_offsets_response as describe_share,
            fetch_response as fetch, find_coordinator_response as find, incremental_alter_configs_response as ialter,
            leave_group_response as leave, list_offsets_response as list_offsets, metadata_response as metadata,
            offset_commit_response as commit, offset_delete_response as offset_delete,
            offset_fetch_response as offset_fetch, offset_for_leader_epoch_response as epoch,
            produce_response as produce, read_share_group_state_response as read_share,
            share_acknowledge_response as share_ack, share_fetch_response as share_fetch,
            share_group_describe_response as share_describe, write_share_group_state_response as write_share,
        };
        vec![
            // Top-level code only.
            (
                ApiKey::ApiVersions,
                ResponseKind::ApiVersions(ApiVersionsResponse::default().with_error_code(35)),
                vec![35],
            ),
            (
                ApiKey::DescribeCluster,
                ResponseKind::DescribeCluster(DescribeClusterResponse::default().with_error_code(31)),
                vec![31],
            ),
            (
                ApiKey::InitProducerId,
                ResponseKind::InitProducerId(InitProducerIdResponse::default().with_error_code(15)),
                vec![15],
            ),
            (
                ApiKey::JoinGroup,
                ResponseKind::JoinGroup(JoinGroupResponse::default().with_error_code(16)),
                vec![16],
            ),
            (
                ApiKey::SyncGroup,
                ResponseKind::SyncGroup(SyncGroupResponse::default().with_error_code(27)),
                vec![27],
            ),
            (
                ApiKey::Heartbeat,
                ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(25)),
                vec![25],
            ),
            (
                ApiKey::ListGroups,
                ResponseKind::ListGroups(ListGroupsResponse::default().with_error_code(15)),
                vec![15],
            ),
            (
                ApiKey::ShareGroupHeartbeat,
                ResponseKind::ShareGroupHeartbeat(ShareGroupHeartbeatResponse::default().with_error_code(25)),
                vec![25],
            ),
            (
                ApiKey::ConsumerGroupHeartbeat,
                ResponseKind::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatResponse::default().with_error_code(110)),
                vec![110],
            ),
            // Per topic.
            (
                ApiKey::CreateTopics,
                ResponseKind::CreateTopics(CreateTopicsResponse::default().with_topics(vec![
                    create_topics::CreatableTopicResult::default().with_error_code(36),
                    create_topics::CreatableTopicResult::default(),
                ])),
                vec![36],
            ),
            (
                ApiKey::DeleteTopics,
                ResponseKind::DeleteTopics(
                    DeleteTopicsResponse::default()
                        .with_responses(vec![delete_topics::DeletableTopicResult::default().with_error_code(3)]),
                ),
                vec![3],
            ),
            (
                ApiKey::CreatePartitions,
                ResponseKind::CreatePartitions(CreatePartitionsResponse::default().with_results(vec![
                    create_partitions::CreatePartitionsTopicResult::default().with_error_code(37),
                ])),
                vec![37],
            ),
            // Per resource or group.
            (
                ApiKey::DescribeConfigs,
                ResponseKind::DescribeConfigs(DescribeConfigsResponse::default().with_results(vec![
                    describe_configs::DescribeConfigsResult::default().with_error_code(3),
                ])),
                vec![3],
            ),
            (
                ApiKey::AlterConfigs,
                ResponseKind::AlterConfigs(
                    AlterConfigsResponse::default()
                        .with_responses(vec![alter::AlterConfigsResourceResponse::default().with_error_code(40)]),
                ),
                vec![40],
            ),
            (
                ApiKey::IncrementalAlterConfigs,
                ResponseKind::IncrementalAlterConfigs(IncrementalAlterConfigsResponse::default().with_responses(vec![
                    ialter::AlterConfigsResourceResponse::default().with_error_code(40),
                ])),
                vec![40],
            ),
            (
                ApiKey::DescribeGroups,
                ResponseKind::DescribeGroups(
                    DescribeGroupsResponse::default()
                        .with_groups(vec![describe_groups::DescribedGroup::default().with_error_code(16)]),
                ),
                vec![16],
            ),
            (
                ApiKey::DeleteGroups,
                ResponseKind::DeleteGroups(
                    DeleteGroupsResponse::default()
                        .with_results(vec![delete_groups::DeletableGroupResult::default().with_error_code(68)]),
                ),
                vec![68],
            ),
            (
                ApiKey::ShareGroupDescribe,
                ResponseKind::ShareGroupDescribe(
                    ShareGroupDescribeResponse::default()
                        .with_groups(vec![share_describe::DescribedGroup::default().with_error_code(69)]),
                ),
                vec![69],
            ),
            (
                ApiKey::ConsumerGroupDescribe,
                ResponseKind::ConsumerGroupDescribe(
                    ConsumerGroupDescribeResponse::default()
                        .with_groups(vec![cg_describe::DescribedGroup::default().with_error_code(69)]),
                ),
                vec![69],
            ),
            // Top level, then each coordinator or member.
            (
                ApiKey::FindCoordinator,
                ResponseKind::FindCoordinator(
                    FindCoordinatorResponse::default()
                        .with_error_code(15)
                        .with_coordinators(vec![find::Coordinator::default().with_error_code(14)]),
                ),
                vec![14, 15],
            ),
            (
                ApiKey::LeaveGroup,
                ResponseKind::LeaveGroup(
                    LeaveGroupResponse::default()
                        .with_members(vec![leave::MemberResponse::default().with_error_code(25)]),
                ),
                vec![25],
            ),
            // Per partition of each topic.
            (
                ApiKey::Produce,
                ResponseKind::Produce(ProduceResponse::default().with_responses(vec![
                    produce::TopicProduceResponse::default().with_partition_responses(vec![
                        produce::PartitionProduceResponse::default().with_error_code(6),
                        produce::PartitionProduceResponse::default(),
                        produce::PartitionProduceResponse::default().with_error_code(19),
                    ]),
                    produce::TopicProduceResponse::default().with_partition_responses(vec![
                        produce::PartitionProduceResponse::default().with_error_code(6),
                    ]),
                ])),
                vec![6, 6, 19],
            ),
            (
                ApiKey::ListOffsets,
                ResponseKind::ListOffsets(ListOffsetsResponse::default().with_topics(vec![
                    list_offsets::ListOffsetsTopicResponse::default().with_partitions(vec![
                        list_offsets::ListOffsetsPartitionResponse::default().with_error_code(6),
                    ]),
                ])),
                vec![6],
            ),
            (
                ApiKey::DeleteRecords,
                ResponseKind::DeleteRecords(DeleteRecordsResponse::default().with_topics(vec![
                    delete_records::DeleteRecordsTopicResult::default().with_partitions(vec![
                        delete_records::DeleteRecordsPartitionResult::default().with_error_code(1),
                    ]),
                ])),
                vec![1],
            ),
            (
                ApiKey::OffsetCommit,
                ResponseKind::OffsetCommit(OffsetCommitResponse::default().with_topics(vec![
                    commit::OffsetCommitResponseTopic::default().with_partitions(vec![
                        commit::OffsetCommitResponsePartition::default().with_error_code(22),
                    ]),
                ])),
                vec![22],
            ),
            (
                ApiKey::OffsetForLeaderEpoch,
                ResponseKind::OffsetForLeaderEpoch(OffsetForLeaderEpochResponse::default().with_topics(vec![
                    epoch::OffsetForLeaderTopicResult::default().with_partitions(vec![
                        epoch::EpochEndOffset::default().with_error_code(74),
                    ]),
                ])),
                vec![74],
            ),
            (
                ApiKey::ReadShareGroupState,
                ResponseKind::ReadShareGroupState(ReadShareGroupStateResponse::default().with_results(vec![
                    read_share::ReadStateResult::default().with_partitions(vec![
                        read_share::PartitionResult::default().with_error_code(3),
                    ]),
                ])),
                vec![3],
            ),
            (
                ApiKey::WriteShareGroupState,
                ResponseKind::WriteShareGroupState(WriteShareGroupStateResponse::default().with_results(vec![
                    write_share::WriteStateResult::default().with_partitions(vec![
                        write_share::PartitionResult::default().with_error_code(3),
                    ]),
                ])),
                vec![3],
            ),
            // Top level, then per partition of each topic.
            (
                ApiKey::Fetch,
                ResponseKind::Fetch(FetchResponse::default().with_responses(vec![
                    fetch::FetchableTopicResponse::default().with_partitions(vec![
                        fetch::PartitionData::default().with_error_code(1),
                        fetch::PartitionData::default(),
                    ]),
                ])),
                vec![1],
            ),
            (
                ApiKey::OffsetDelete,
                ResponseKind::OffsetDelete(OffsetDeleteResponse::default().with_topics(vec![
                    offset_delete::OffsetDeleteResponseTopic::default().with_partitions(vec![
                        offset_delete::OffsetDeleteResponsePartition::default().with_error_code(86),
                    ]),
                ])),
                vec![86],
            ),
            (
                ApiKey::ShareFetch,
                ResponseKind::ShareFetch(ShareFetchResponse::default().with_responses(vec![
                    share_fetch::ShareFetchableTopicResponse::default().with_partitions(vec![
                        share_fetch::PartitionData::default()
                            .with_error_code(6)
                            .with_acknowledge_error_code(42),
                    ]),
                ])),
                vec![6, 42],
            ),
            (
                ApiKey::ShareAcknowledge,
                ResponseKind::ShareAcknowledge(
                    ShareAcknowledgeResponse::default()
                        .with_error_code(122)
                        .with_responses(vec![
                            share_ack::ShareAcknowledgeTopicResponse::default()
                                .with_partitions(vec![share_ack::PartitionData::default().with_error_code(6)]),
                        ]),
                ),
                vec![6, 122],
            ),
            (
                ApiKey::AlterShareGroupOffsets,
                ResponseKind::AlterShareGroupOffsets(AlterShareGroupOffsetsResponse::default().with_responses(vec![
                    alter_share::AlterShareGroupOffsetsResponseTopic::default().with_partitions(vec![
                        alter_share::AlterShareGroupOffsetsResponsePartition::default().with_error_code(3),
                    ]),
                ])),
                vec![3],
            ),
            (
                ApiKey::DescribeQuorum,
                ResponseKind::DescribeQuorum(DescribeQuorumResponse::default().with_topics(vec![
                        quorum::TopicData::default()
                            .with_partitions(vec![quorum::PartitionData::default().with_error_code(6)]),
                    ])),
                vec![6],
            ),
            // Top level, each topic, each partition.
            (
                ApiKey::Metadata,
                ResponseKind::Metadata(MetadataResponse::default().with_topics(vec![
                    metadata::MetadataResponseTopic::default().with_error_code(3),
                    metadata::MetadataResponseTopic::default().with_partitions(vec![
                        metadata::MetadataResponsePartition::default().with_error_code(5),
                    ]),
                ])),
                vec![3, 5],
            ),
            (
                ApiKey::DeleteShareGroupOffsets,
                ResponseKind::DeleteShareGroupOffsets(DeleteShareGroupOffsetsResponse::default().with_responses(vec![
                    delete_share::DeleteShareGroupOffsetsResponseTopic::default().with_error_code(3),
                ])),
                vec![3],
            ),
            // Groups with their topics' partitions.
            (
                ApiKey::OffsetFetch,
                ResponseKind::OffsetFetch(
                    OffsetFetchResponse::default()
                        .with_topics(vec![offset_fetch::OffsetFetchResponseTopic::default().with_partitions(
                            vec![offset_fetch::OffsetFetchResponsePartition::default().with_error_code(3)],
                        )])
                        .with_groups(vec![
                            offset_fetch::OffsetFetchResponseGroup::default().with_error_code(16),
                            offset_fetch::OffsetFetchResponseGroup::default().with_topics(vec![
                                offset_fetch::OffsetFetchResponseTopics::default().with_partitions(vec![
                                    offset_fetch::OffsetFetchResponsePartitions::default().with_error_code(88),
                                ]),
                            ]),
                        ]),
                ),
                vec![3, 16, 88],
            ),
            (
                ApiKey::DescribeShareGroupOffsets,
                ResponseKind::DescribeShareGroupOffsets(DescribeShareGroupOffsetsResponse::default().with_groups(
                    vec![
                        describe_share::DescribeShareGroupOffsetsResponseGroup::default()
                            .with_error_code(16)
                            .with_topics(vec![
                                describe_share::DescribeShareGroupOffsetsResponseTopic::default().with_partitions(
                                    vec![
                                        describe_share::DescribeShareGroupOffsetsResponsePartition::default()
                                            .with_error_code(3),
                                    ],
                                ),
                            ]),
                    ],
                )),
                vec![3, 16],
            ),
        ]
    }

    #[test]
    fn every_supported_api_has_a_sample() {
        let sampled: Vec<ApiKey> = samples().iter().map(|(key, _, _)| *key).collect();
        for (key, _, _) in super::super::SUPPORTED {
            assert!(
                sampled.contains(key),
                "{key:?} has no sample here: add one, and its arm to error_codes"
            );
        }
    }

    /// The samples of `keys` carry the codes expected of them.
    fn check(keys: &[ApiKey]) {
        let samples = samples();
        for key in keys {
            let (_, response, expected) = samples.iter().find(|(k, _, _)| k == key).expect("sampled");
            assert_eq!(&codes(response), expected, "{key:?}");
        }
    }

    #[test]
    fn top_level_codes_are_found() {
        check(&[
            ApiKey::ApiVersions,
            ApiKey::DescribeCluster,
            ApiKey::InitProducerId,
            ApiKey::JoinGroup,
            ApiKey::SyncGroup,
            ApiKey::Heartbeat,
            ApiKey::ListGroups,
            ApiKey::ShareGroupHeartbeat,
            ApiKey::ConsumerGroupHeartbeat,
        ]);
    }

    #[test]
    fn per_topic_resource_group_and_member_codes_are_found() {
        check(&[
            ApiKey::CreateTopics,
            ApiKey::DeleteTopics,
            ApiKey::CreatePartitions,
            ApiKey::DescribeConfigs,
            ApiKey::AlterConfigs,
            ApiKey::IncrementalAlterConfigs,
            ApiKey::DescribeGroups,
            ApiKey::DeleteGroups,
            ApiKey::ShareGroupDescribe,
            ApiKey::ConsumerGroupDescribe,
            ApiKey::FindCoordinator,
            ApiKey::LeaveGroup,
            ApiKey::DeleteShareGroupOffsets,
        ]);
    }

    #[test]
    fn per_partition_codes_are_found_each_time_they_occur() {
        check(&[
            ApiKey::Produce,
            ApiKey::ListOffsets,
            ApiKey::DeleteRecords,
            ApiKey::OffsetCommit,
            ApiKey::OffsetForLeaderEpoch,
            ApiKey::ReadShareGroupState,
            ApiKey::WriteShareGroupState,
            ApiKey::Fetch,
            ApiKey::OffsetDelete,
            ApiKey::ShareFetch,
            ApiKey::ShareAcknowledge,
            ApiKey::AlterShareGroupOffsets,
            ApiKey::DescribeQuorum,
        ]);
    }

    #[test]
    fn nested_topic_and_group_codes_are_found() {
        check(&[ApiKey::Metadata, ApiKey::OffsetFetch, ApiKey::DescribeShareGroupOffsets]);
    }

    #[test]
    fn every_sample_is_checked_by_a_shape_test() {
        // 9 + 13 + 13 + 3: the lists above cover every sample.
        assert_eq!(samples().len(), 38);
    }
}
