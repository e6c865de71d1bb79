package cxstream.peers.kstreams;

import java.io.ByteArrayOutputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;

/**
 * One customer session: its event count and its distinct contacts, each with its channel and
 * the event time it was first seen. The channel path is the contacts' channels in first-seen
 * order, as cxstream's session record has it ({@code channel_path}); it is derived at output
 * because a merge can bring contacts that started earlier.
 */
final class SessionAggregate {
  /** One distinct contact of the session. */
  record Contact(String contactId, String channel, long firstAt) {}

  private static final Comparator<Contact> FIRST_SEEN =
      Comparator.comparingLong(Contact::firstAt).thenComparing(Contact::contactId);

  long events;
  final List<Contact> contacts;

  SessionAggregate() {
    this(0, new ArrayList<>(2));
  }

  private SessionAggregate(long events, List<Contact> contacts) {
    this.events = events;
    this.contacts = contacts;
  }

  /** The aggregator: count the event, note its contact (a few per session: a list scan). */
  SessionAggregate add(Event event) {
    events += 1;
    note(new Contact(event.contactId(), event.channel(), event.occurredAt()));
    return this;
  }

  private void note(Contact contact) {
    for (int i = 0; i < contacts.size(); i++) {
      Contact known = contacts.get(i);
      if (known.contactId().equals(contact.contactId())) {
        if (contact.firstAt() < known.firstAt()) {
          contacts.set(i, new Contact(known.contactId(), contact.channel(), contact.firstAt()));
        }
        return;
      }
    }
    contacts.add(contact);
  }

  /** The session merger: an out-of-order event bridged two sessions of one customer. */
  static SessionAggregate merge(SessionAggregate left, SessionAggregate right) {
    SessionAggregate merged = new SessionAggregate(left.events, new ArrayList<>(left.contacts));
    merged.events += right.events;
    for (Contact contact : right.contacts) {
      merged.note(contact);
    }
    return merged;
  }

  List<String> channelPath() {
    List<Contact> ordered = new ArrayList<>(contacts);
    ordered.sort(FIRST_SEEN);
    List<String> path = new ArrayList<>(ordered.size());
    for (Contact contact : ordered) {
      path.add(contact.channel());
    }
    return path;
  }

  /**
   * The output record: big-endian {@code start, end} (epoch ms), {@code events, contacts} (int),
   * then the channel path as one UTF-8 string, comma-separated, with an int length.
   * pipeline/tools/bench_peers.py reads it.
   */
  byte[] encodeOutput(long start, long end) {
    byte[] path = String.join(",", channelPath()).getBytes(StandardCharsets.UTF_8);
    ByteBuffer out = ByteBuffer.allocate(8 + 8 + 4 + 4 + 4 + path.length);
    out.putLong(start).putLong(end).putInt((int) events).putInt(contacts.size());
    out.putInt(path.length).put(path);
    return out.array();
  }

  /** The store's and the suppression buffer's serde: count, then each contact. */
  static Serde<SessionAggregate> serde() {
    Serializer<SessionAggregate> serializer =
        (topic, aggregate) -> {
          if (aggregate == null) {
            return null;
          }
          ByteArrayOutputStream bytes = new ByteArrayOutputStream(64);
          try (DataOutputStream out = new DataOutputStream(bytes)) {
            out.writeLong(aggregate.events);
            out.writeShort(aggregate.contacts.size());
            for (Contact contact : aggregate.contacts) {
              writeString(out, contact.contactId());
              writeString(out, contact.channel());
              out.writeLong(contact.firstAt());
            }
          } catch (IOException exc) {
            throw new UncheckedIOException(exc);
          }
          return bytes.toByteArray();
        };
    Deserializer<SessionAggregate> deserializer =
        (topic, data) -> {
          if (data == null) {
            return null;
          }
          ByteBuffer in = ByteBuffer.wrap(data);
          long events = in.getLong();
          int count = in.getShort() & 0xFFFF;
          List<Contact> contacts = new ArrayList<>(count + 1);
          for (int i = 0; i < count; i++) {
            contacts.add(new Contact(readString(in), readString(in), in.getLong()));
          }
          return new SessionAggregate(events, contacts);
        };
    return Serdes.serdeFrom(serializer, deserializer);
  }

  // Plain UTF-8 with an int length: DataOutputStream.writeUTF's modified UTF-8 would change
  // a NUL or a character outside the BMP, and cap a string at 64 KiB.
  private static void writeString(DataOutputStream out, String text) throws IOException {
    byte[] raw = text.getBytes(StandardCharsets.UTF_8);
    out.writeInt(raw.length);
    out.write(raw);
  }

  private static String readString(ByteBuffer in) {
    int length = in.getInt();
    byte[] raw = new byte[length];
    in.get(raw);
    return new String(raw, StandardCharsets.UTF_8);
  }
}
