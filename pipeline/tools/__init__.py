"""Tools around the pipeline, not part of it: nothing in the worker's hot path.

* :mod:`~pipeline.tools.simulator` (pure) and :mod:`~pipeline.tools.sim_delivery`:
  simulated bank traffic; :mod:`~pipeline.tools.simulate_cli`: ``cxstream simulate``;
* :mod:`~pipeline.tools.demo`: ``cxstream demo``, the whole pipeline on a local broker;
* :mod:`~pipeline.tools.bench` and ``bench_*``: the benchmarks, including the Kafka
  Streams peer (``peers/kstreams``, Java, built with Maven);
* :mod:`~pipeline.tools.broker`: the local Kafka broker launcher;
* :mod:`~pipeline.tools.native`: the mypyc build of the domain core (``pipeline/core``).
"""
