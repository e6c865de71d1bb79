package cxstream.peers.kstreams;

import java.time.Duration;
import java.util.HashMap;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.LogAndContinueExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.SessionWindows;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.processor.TimestampExtractor;
import org.apache.kafka.streams.state.SessionStore;

/**
 * The Kafka Streams side of {@code cxstream bench peers}: per-customer session windows over
 * cxstream's input topic, timed from the first record to the input committed to its end.
 *
 * <p>Arguments ({@code --name value}): {@code bootstrap}, {@code input}, {@code output},
 * {@code application-id}, {@code state-dir}, {@code fingerprint} (hex of the event schema's
 * CRC-64-AVRO fingerprint), {@code guarantee} ({@code exactly_once_v2} or {@code
 * at_least_once}), {@code commit-ms} (the commit interval).
 *
 * <p>It prints one JSON line on stdout when every input partition's committed offset has
 * reached the end offset it had at start (the harness preloads the input before): {@code
 * events} (records in the input), {@code seconds} and {@code cpu_s} (this JVM's CPU, all its
 * threads) between the first record's decoding and that moment, {@code sessions_emitted} and
 * {@code undecodable} (records skipped). Committed to the end means the outputs are acknowledged
 * too: under at-least-once Kafka Streams flushes its producer before it commits offsets, under
 * exactly-once the outputs and the offsets commit in one transaction. Then it exits.
 */
public final class SessionsApp {
  static final Duration GAP = Duration.ofMinutes(30);
  static final Duration GRACE = Duration.ofMinutes(5);
  private static final long POLL_MS = 20;

  private SessionsApp() {}

  /** Event time is {@code occurred_at}. */
  static final class OccurredAt implements TimestampExtractor {
    @Override
    public long extract(ConsumerRecord<Object, Object> record, long partitionTime) {
      return ((Event) record.value()).occurredAt();
    }
  }

  static Topology topology(String input, String output, String fingerprint, AtomicLong emitted) {
    StreamsBuilder builder = new StreamsBuilder();
    builder
        .stream(
            input,
            Consumed.with(Serdes.String(), Serdes.serdeFrom(readOnly(), new Event.Decoder(fingerprint)))
                .withTimestampExtractor(new OccurredAt()))
        .groupByKey()
        .windowedBy(SessionWindows.ofInactivityGapAndGrace(GAP, GRACE))
        .aggregate(
            SessionAggregate::new,
            (customer, event, session) -> session.add(event),
            (customer, left, right) -> SessionAggregate.merge(left, right),
            Materialized.<String, SessionAggregate, SessionStore<Bytes, byte[]>>as("sessions")
                .withKeySerde(Serdes.String())
                .withValueSerde(SessionAggregate.serde()))
        // Not emitStrategy(onWindowClose): it checks for closed windows once per wall-clock
        // second by default and missed most sessions of a replay (docs/benchmarks.md).
        .suppress(
            Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded())
                .withName("sessions-closed"))
        .toStream()
        .map(
            (window, session) -> {
              if (session == null) { // final results drop tombstones; kept in case they do not
                return KeyValue.pair(window.key(), null);
              }
              emitted.incrementAndGet();
              byte[] value =
                  session.encodeOutput(window.window().start(), window.window().end());
              return KeyValue.pair(window.key(), value);
            })
        .to(output, Produced.with(Serdes.String(), Serdes.ByteArray()));
    return builder.build();
  }

  /** The input is only read: a serde needs a serializer all the same. */
  private static Serializer<Event> readOnly() {
    return (topic, event) -> {
      throw new UnsupportedOperationException("the peer never writes input events");
    };
  }

  static Properties config(Map<String, String> args) {
    Properties props = new Properties();
    props.put(StreamsConfig.APPLICATION_ID_CONFIG, args.get("application-id"));
    props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args.get("bootstrap"));
    props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, args.get("guarantee"));
    props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
    props.put(StreamsConfig.STATE_DIR_CONFIG, args.get("state-dir"));
    props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, Long.parseLong(args.get("commit-ms")));
    // One broker: the internal topics (changelogs) cannot have more replicas.
    props.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
    props.put(
        StreamsConfig.DESERIALIZATION_EXCEPTION_HANDLER_CLASS_CONFIG,
        LogAndContinueExceptionHandler.class);
    props.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");
    return props;
  }

  static Map<String, String> parseArgs(String[] argv) {
    Set<String> names =
        Set.of(
            "bootstrap",
            "input",
            "output",
            "application-id",
            "state-dir",
            "fingerprint",
            "guarantee",
            "commit-ms");
    Map<String, String> args = new HashMap<>();
    for (int i = 0; i + 1 < argv.length; i += 2) {
      String name = argv[i].replaceFirst("^--", "");
      if (!names.contains(name)) {
        throw new IllegalArgumentException("unknown argument " + argv[i]);
      }
      args.put(name, argv[i + 1]);
    }
    if (!args.keySet().containsAll(names)) {
      throw new IllegalArgumentException("arguments needed: --" + String.join(" --", names));
    }
    return args;
  }

  public static void main(String[] argv) throws Exception {
    Map<String, String> args = parseArgs(argv);
    String input = args.get("input");
    AtomicLong emitted = new AtomicLong();
    Topology topology = topology(input, args.get("output"), args.get("fingerprint"), emitted);
    Properties admin = new Properties();
    admin.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args.get("bootstrap"));
    try (Admin client = Admin.create(admin)) {
      Map<TopicPartition, Long> ends = endOffsets(client, input);
      long events = ends.values().stream().mapToLong(Long::longValue).sum();
      KafkaStreams streams = new KafkaStreams(topology, config(args));
      CountDownLatch failed = new CountDownLatch(1);
      streams.setUncaughtExceptionHandler(
          exc -> {
            exc.printStackTrace();
            failed.countDown();
            return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler
                .StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
          });
      streams.start();
      String group = args.get("application-id");
      while (!committedToEnd(client, group, ends)) {
        if (failed.await(POLL_MS, TimeUnit.MILLISECONDS)) {
          streams.close(Duration.ofSeconds(10));
          System.exit(1);
        }
      }
      long seconds = System.nanoTime() - Clock.startNanos();
      long cpu = Clock.cpuNanos() - Clock.startCpuNanos();
      System.out.println(
          String.format(
              Locale.ROOT,
              "{\"events\": %d, \"seconds\": %.4f, \"events_per_s\": %.1f, \"cpu_s\": %.4f,"
                  + " \"sessions_emitted\": %d, \"undecodable\": %d, \"guarantee\": \"%s\"}",
              events,
              seconds / 1e9,
              events / (seconds / 1e9),
              cpu / 1e9,
              emitted.get(),
              Event.Decoder.UNDECODABLE.get(),
              args.get("guarantee")));
      System.out.flush();
      streams.close(Duration.ofSeconds(30));
    }
    System.exit(0);
  }

  static Map<TopicPartition, Long> endOffsets(Admin client, String topic) throws Exception {
    TopicDescription description =
        client.describeTopics(Set.of(topic)).allTopicNames().get().get(topic);
    Map<TopicPartition, OffsetSpec> latest = new HashMap<>();
    description
        .partitions()
        .forEach(p -> latest.put(new TopicPartition(topic, p.partition()), OffsetSpec.latest()));
    Map<TopicPartition, Long> ends = new HashMap<>();
    client.listOffsets(latest).all().get().forEach((tp, info) -> ends.put(tp, info.offset()));
    return ends;
  }

  static boolean committedToEnd(Admin client, String group, Map<TopicPartition, Long> ends)
      throws Exception {
    if (Clock.startNanos() == 0) {
      return false;
    }
    Map<TopicPartition, OffsetAndMetadata> committed =
        client.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
    for (Map.Entry<TopicPartition, Long> end : ends.entrySet()) {
      OffsetAndMetadata offset = committed.get(end.getKey());
      long position = offset == null ? 0 : offset.offset();
      if (position < end.getValue()) {
        return false;
      }
    }
    return true;
  }
}
