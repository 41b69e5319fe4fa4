//! Load for the memory benchmark (`scripts/bench-memory`): creates TOPICS topics of PARTITIONS partitions on
//! a running server, writes one record to every partition and reads it back, through librdkafka.
//!
//! ```sh
//! cargo run --release --example many_topics -- localhost:9092 1000 10
//! ```

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

/// Topics per CreateTopics request.
const CREATE_CHUNK: usize = 100;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, bootstrap, topics, partitions] = &args[..] else {
        anyhow::bail!("usage: many_topics BOOTSTRAP TOPICS PARTITIONS");
    };
    let (topics, partitions): (usize, i32) = (topics.parse()?, partitions.parse()?);
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4");
    let names: Vec<String> = (0..topics).map(|i| format!("many-{i:05}")).collect();

    let started = Instant::now();
    let admin: AdminClient<DefaultClientContext> = config.create()?;
    for chunk in names.chunks(CREATE_CHUNK) {
        let new: Vec<NewTopic<'_>> = chunk
            .iter()
            .map(|name| NewTopic::new(name, partitions, TopicReplication::Fixed(1)))
            .collect();
        for result in admin.create_topics(&new, &AdminOptions::new()).await? {
            result.map_err(|(topic, code)| anyhow::anyhow!("creating {topic}: {code:?}"))?;
        }
    }
    eprintln!(
        "created {topics} topics x {partitions} partitions in {:?}",
        started.elapsed()
    );

    let producer: FutureProducer = config.clone().set("linger.ms", "20").create()?;
    let mut deliveries = Vec::new();
    for name in &names {
        for partition in 0..partitions {
            let record = FutureRecord::to(name)
                .partition(partition)
                .key("k")
                .payload("one record per partition");
            deliveries.push(producer.send_result(record).map_err(|(e, _)| e)?);
        }
    }
    for delivery in deliveries {
        delivery.await?.map_err(|(e, _)| e)?;
    }
    eprintln!(
        "wrote one record to each of {} partitions",
        topics * partitions as usize
    );

    let consumer: BaseConsumer = config
        .set("group.id", "many-topics")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for name in &names {
        for partition in 0..partitions {
            assignment.add_partition_offset(name, partition, Offset::Beginning)?;
        }
    }
    consumer.assign(&assignment)?;
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut read = 0;
    while read < topics * partitions as usize {
        anyhow::ensure!(Instant::now() < deadline, "read {read} records before the deadline");
        if let Some(message) = consumer.poll(Duration::from_millis(500)) {
            message?;
            read += 1;
        }
    }
    eprintln!("read them back; total {:?}", started.elapsed());
    Ok(())
}
