"""A batch-at-a-time worker runtime: the prototype of issue 14's redesign.

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
* :mod:`~pipeline.runtime.loop`: the consumer loop and the partition lifecycle.

Not wired into ``cxstream worker`` yet: ``cxstream bench runtime`` measures it.
"""
