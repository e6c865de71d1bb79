package cxstream.peers.kstreams;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.serialization.Deserializer;

/**
 * The fields of one cxstream interaction event that the session aggregate needs.
 *
 * <p>Decoded by hand from cxstream's Avro single-object encoding (marker {@code C3 01}, the
 * writer schema's 8-byte CRC-64-AVRO fingerprint, then the Avro binary body; see
 * pipeline/contract/codec.py). The body's first five fields are {@code event_id},
 * {@code occurred_at}, {@code customer_id}, {@code channel} and {@code contact_id}
 * (schemas/interaction_event/v1.avsc); reading stops after them, which is what a generated
 * Avro reader with a projection would do too, without the Avro library's start-up.
 *
 * <p>The first record decoded starts the run's clock ({@link Clock}): it is the first record
 * the stream thread consumed, decodable or not.
 */
record Event(long occurredAt, String channel, String contactId) {

  /** Decodes events of exactly one writer schema, named by its fingerprint. */
  static final class Decoder implements Deserializer<Event> {
    /** Records skipped as undecodable (none on simulator traffic; reported, not hidden). */
    static final AtomicLong UNDECODABLE = new AtomicLong();

    private final byte[] fingerprint;

    Decoder(String fingerprintHex) {
      this.fingerprint = HexFormat.of().parseHex(fingerprintHex);
      if (fingerprint.length != 8) {
        throw new IllegalArgumentException("a CRC-64-AVRO fingerprint is 8 bytes");
      }
    }

    @Override
    public Event deserialize(String topic, byte[] data) {
      Clock.markStart();
      try {
        return decode(data);
      } catch (SerializationException exc) {
        UNDECODABLE.incrementAndGet();
        throw exc;
      }
    }

    private Event decode(byte[] data) {
      if (data == null) {
        return null;
      }
      if (data.length < 10 || data[0] != (byte) 0xC3 || data[1] != (byte) 0x01) {
        throw new SerializationException("not Avro single-object encoded");
      }
      if (!Arrays.equals(data, 2, 10, fingerprint, 0, 8)) {
        throw new SerializationException("unknown writer schema fingerprint");
      }
      Cursor cursor = new Cursor(data, 10);
      cursor.skipString(); // event_id
      long occurredAt = cursor.readLong();
      cursor.skipString(); // customer_id: the record key
      String channel = cursor.readString();
      String contactId = cursor.readString();
      return new Event(occurredAt, channel, contactId);
    }
  }

  /** Avro binary primitives: zig-zag varint longs, length-prefixed UTF-8 strings. */
  private static final class Cursor {
    private final byte[] data;
    private int position;

    Cursor(byte[] data, int position) {
      this.data = data;
      this.position = position;
    }

    long readLong() {
      long raw = 0;
      int shift = 0;
      while (true) {
        if (position >= data.length || shift > 63) {
          throw new SerializationException("truncated or overlong Avro long");
        }
        int b = data[position++] & 0xFF;
        raw |= (long) (b & 0x7F) << shift;
        if ((b & 0x80) == 0) {
          return (raw >>> 1) ^ -(raw & 1);
        }
        shift += 7;
      }
    }

    private int stringLength() {
      long length = readLong();
      if (length < 0 || length > data.length - position) {
        throw new SerializationException("bad Avro string length " + length);
      }
      return (int) length;
    }

    String readString() {
      int length = stringLength();
      String text = new String(data, position, length, StandardCharsets.UTF_8);
      position += length;
      return text;
    }

    void skipString() {
      int length = stringLength(); // before the +=, which would read position first
      position += length;
    }
  }
}
