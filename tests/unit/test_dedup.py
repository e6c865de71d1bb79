from pipeline.core.dedup import DedupWindow

DAY = 86_400_000
BUCKET = DAY // 48  # pruning is batched into half hours of a day's retention


def test_second_copy_of_an_event_id_within_retention_is_a_duplicate():
    window = DedupWindow(DAY)
    assert window.check_and_add("e1", 1_000, 1_000) is False
    assert window.check_and_add("e1", 1_000, 2_000) is True


def test_an_id_older_than_the_retention_counts_as_new_even_before_pruning():
    window = DedupWindow(DAY)
    window.check_and_add("e1", 1_000, 1_000)
    assert window.check_and_add("e1", 1_000, 1_000 + DAY + 1) is False


def test_prune_forgets_only_ids_past_the_retention():
    window = DedupWindow(DAY)
    window.check_and_add("old", 0, 0)
    window.check_and_add("new", 5_000, 5_000)
    assert window.next_expiry_ms() == DAY + BUCKET
    window.prune(DAY + 1)
    assert window.to_state() == ["new", "5000"]
    assert window.next_expiry_ms() == DAY + BUCKET


def test_ids_expiring_within_one_bucket_are_pruned_by_one_wake_up():
    window = DedupWindow(DAY)
    for index, at in enumerate((0, 60_000, BUCKET - 2)):
        window.check_and_add(f"e{index}", at, at)
    due = window.next_expiry_ms()
    assert due == DAY + BUCKET
    window.prune(due)
    assert len(window) == 0
    assert window.next_expiry_ms() is None


def test_state_round_trip_keeps_ids_and_expiry():
    window = DedupWindow(DAY)
    window.check_and_add("a", 10, 10)
    window.check_and_add("b", 5, 10)
    restored = DedupWindow.from_state(window.to_state(), DAY)
    assert restored.to_state() == ["a\nb", "10,5"]
    assert restored.next_expiry_ms() == DAY + BUCKET
    assert restored.check_and_add("b", 5, 20) is True


def test_state_lists_the_ids_when_one_contains_the_separator():
    window = DedupWindow(DAY)
    window.check_and_add("a\nb", 10, 10)
    window.check_and_add("c", 20, 20)
    assert window.to_state() == [["a\nb", "c"], "10,20"]
    restored = DedupWindow.from_state(window.to_state(), DAY)
    assert restored.check_and_add("a\nb", 10, 30) is True
    assert restored.check_and_add("a", 10, 30) is False


def test_empty_window_round_trips_to_an_empty_window():
    restored = DedupWindow.from_state(DedupWindow(DAY).to_state(), DAY)
    assert (len(restored), restored.next_expiry_ms()) == (0, None)


def test_version_1_pairs_restore_the_same_window():
    restored = DedupWindow.from_pairs([["a", 10], ["b", 5]], DAY)
    assert restored.to_state() == ["a\nb", "10,5"]
    assert restored.check_and_add("b", 5, 20) is True


def test_state_kept_up_to_date_as_ids_arrive_equals_a_fresh_one():
    window = DedupWindow(DAY)
    window.check_and_add("a", 10, 10)
    assert window.to_state() == ["a", "10"]
    window.check_and_add("b", 5, 10)
    window.check_and_add("a", 10, 20)  # a duplicate changes nothing
    assert window.to_state() == ["a\nb", "10,5"]
    window.check_and_add("a", 30 + DAY, 30 + DAY)  # seen again after the retention
    window.check_and_add("c", 40 + DAY, 40 + DAY)
    assert window.to_state() == ["a\nb\nc", f"{30 + DAY},5,{40 + DAY}"]
    window.prune(20 + DAY)
    assert window.to_state() == ["a\nc", f"{30 + DAY},{40 + DAY}"]
    assert window.next_expiry_ms() == 2 * DAY + BUCKET
