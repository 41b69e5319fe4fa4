"""A share group through confluent-kafka's AdminClient, for broker/tests/python_clients.rs.

confluent-kafka 2.16.1 has no share-group APIs in its AdminClient (no DescribeShareGroupOffsets and the
rest; list_consumer_groups asks only for consumer and classic groups): what it can do with a share group is
delete it (DeleteGroups, through delete_consumer_groups, which sends the group id whatever its type).

Usage: share_admin.py BOOTSTRAP GROUP. Deletes GROUP; prints one line of JSON: {"error": null or the Kafka
error's name (NON_EMPTY_GROUP, GROUP_ID_NOT_FOUND, ...)}.
"""

import json
import sys

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient


def main():
    bootstrap, group = sys.argv[1:3]
    admin = AdminClient({"bootstrap.servers": bootstrap, "broker.address.family": "v4"})
    error = None
    try:
        admin.delete_consumer_groups([group], request_timeout=10)[group].result()
    except KafkaException as e:
        error = e.args[0].name()
    print(json.dumps({"error": error}))


if __name__ == "__main__":
    main()
