package cxstream.peers.kstreams;

import java.lang.management.ManagementFactory;

/** The start of the timed run: wall clock and this JVM's CPU when the first record arrived. */
final class Clock {
  private static volatile long startNanos;
  private static volatile long startCpuNanos;

  private Clock() {}

  /** Called for every record on the stream thread; only the first call counts. */
  static void markStart() {
    if (startNanos == 0) {
      startCpuNanos = cpuNanos();
      startNanos = System.nanoTime();
    }
  }

  /** {@code System.nanoTime()} at the first record, 0 before it. */
  static long startNanos() {
    return startNanos;
  }

  static long startCpuNanos() {
    return startCpuNanos;
  }

  /**
   * CPU time of every thread of this JVM: the stream thread, its producer and consumer network
   * threads, RocksDB's background threads, the JIT compilers and the garbage collector.
   */
  static long cpuNanos() {
    return ((com.sun.management.OperatingSystemMXBean)
            ManagementFactory.getOperatingSystemMXBean())
        .getProcessCpuTime();
  }
}
