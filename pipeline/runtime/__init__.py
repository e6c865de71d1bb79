"""The worker's runtime: read a batch, apply it, commit it, one batch at a time.

Faust pays its consumer, conductor, channel, stream and acknowledgement machinery
once per message (docs/architecture.md, "Runtime options measured"). Here the
input is read per batch by an aiokafka consumer in a consumer group, handed to
:class:`pipeline.streaming.StreamHandler` as it is, and each batch's results are
written by one function, :func:`pipeline.runtime.checkpoint.commit`, in one order:
outputs acknowledged, then state, then input positions. With Kafka transactions
the three are one atomic write.

Layout, one concept per module:

* :mod:`~pipeline.runtime.config`: the frozen runtime settings;
* :mod:`~pipeline.runtime.batch`: consumed records to :class:`RawRecord`, and the
  positions a batch moves to;
* :mod:`~pipeline.runtime.checkpoint`: the commit order, written once;
* :mod:`~pipeline.runtime.changelog`: state restored from the compacted changelog;
* :mod:`~pipeline.runtime.clients`: aiokafka behind the commit function's seams;
* :mod:`~pipeline.runtime.loop`: the consumer loop and the partition lifecycle;
* :mod:`~pipeline.runtime.gauges`: the worker's gauges from the loop's readings;
* :mod:`~pipeline.runtime.tuning`: process-wide tuning (the garbage collector).

``cxstream worker`` runs it inside its Faust app (``agents/process.py``).
"""
