import warnings

# kafka-python 3.0 calls importlib.resources.read_text (deprecated) while its
# protocol package loads; pytest runs with warnings as errors.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.partitioner.default import murmur2 as kafka_murmur2

from pipeline.core.partitioning import murmur2, partition_for


def test_murmur2_matches_kafka_python_for_keys_of_every_length_mod_four():
    keys = ["", "a", "ab", "abc", "abcd", "cust-000123", "äiti-öljy", "x" * 37]
    assert [murmur2(k.encode()) for k in keys] == [kafka_murmur2(k.encode()) for k in keys]


def test_partition_for_matches_the_default_partitioner_arithmetic():
    keys = [f"cust-{i:06d}" for i in range(500)]
    expected = [(kafka_murmur2(k.encode()) & 0x7FFFFFFF) % 6 for k in keys]
    assert [partition_for(k, 6) for k in keys] == expected


def test_partition_for_a_known_key_is_stable():
    # Java: Utils.toPositive(Utils.murmur2("cust-000001".getBytes(UTF_8))) % 6
    assert partition_for("cust-000001", 6) == (kafka_murmur2(b"cust-000001") & 0x7FFFFFFF) % 6
    assert 0 <= partition_for("cust-000001", 6) < 6
