import itertools

from pipeline.core.sessions import SessionBook, session_id_for

MIN = 60_000
GAP = 30 * MIN
GRACE = 5 * MIN


def test_an_event_exactly_one_gap_after_the_last_joins_the_session():
    book = SessionBook(GAP, GRACE)
    first, *_ = book.place("c1", "e1", 0)
    second, superseded, _ = book.place("c1", "e2", GAP)
    assert (second is first, superseded, first.ended_at) == (True, [], GAP)


def test_an_event_one_millisecond_beyond_the_gap_starts_a_new_session():
    book = SessionBook(GAP, GRACE)
    first, *_ = book.place("c1", "e1", 0)
    second, *_ = book.place("c1", "e2", GAP + 1)
    assert second is not first
    assert [s.session_id for s in book.open] == [
        session_id_for("c1", "e1"),
        session_id_for("c1", "e2"),
    ]


def test_a_bridging_event_merges_two_sessions_into_the_earlier_started():
    book = SessionBook(GAP, GRACE)
    early, *_ = book.place("c1", "e1", 0)
    late, *_ = book.place("c1", "e2", 50 * MIN)
    survivor, superseded, _ = book.place("c1", "e3", 25 * MIN)
    assert survivor is early
    assert superseded == [late]
    assert (survivor.started_at, survivor.ended_at, len(book.open)) == (0, 50 * MIN, 1)


def test_a_session_closes_one_millisecond_after_end_plus_gap_plus_grace():
    book = SessionBook(GAP, GRACE)
    session, *_ = book.place("c1", "e1", 1_000)
    assert book.close_due(session) == 1_000 + GAP + GRACE + 1


def test_closed_bounds_flag_events_within_their_gap():
    book = SessionBook(GAP, GRACE)
    session, *_ = book.place("c1", "e1", 10 * GAP)
    book.close(session)
    assert book.hits_closed(10 * GAP + GAP) is True
    assert book.hits_closed(10 * GAP + GAP + 1) is False
    assert book.hits_closed(9 * GAP) is True


def test_an_earlier_event_that_extends_the_start_names_the_session_after_itself():
    """A journey is named after its earliest event (ties: smaller event id), so the
    name does not depend on which event arrived first; the old name is returned."""
    book = SessionBook(GAP, GRACE)
    session, *_ = book.place("c1", "e5", 10 * MIN)
    same, superseded, renamed_from = book.place("c1", "e9", 5 * MIN)
    assert (same is session, superseded, renamed_from) == (True, [], session_id_for("c1", "e5"))
    assert (session.session_id, session.started_at) == (session_id_for("c1", "e9"), 5 * MIN)


def test_an_event_at_the_same_start_with_a_smaller_id_names_the_session():
    book = SessionBook(GAP, GRACE)
    session, *_ = book.place("c1", "e5", 10 * MIN)
    assert book.place("c1", "e7", 10 * MIN)[2] is None
    assert book.place("c1", "e3", 10 * MIN)[2] == session_id_for("c1", "e5")
    assert session.session_id == session_id_for("c1", "e3")


def test_a_later_event_keeps_the_name():
    book = SessionBook(GAP, GRACE)
    session, *_ = book.place("c1", "e5", 10 * MIN)
    assert book.place("c1", "e1", 11 * MIN)[2] is None
    assert session.session_id == session_id_for("c1", "e5")


def test_any_arrival_order_of_the_same_events_gives_the_same_sessions():
    events = [("e1", 0), ("e2", 20 * MIN), ("e3", 45 * MIN), ("e4", 2 * GAP + 50 * MIN)]
    names = set()
    for order in itertools.permutations(events):
        book = SessionBook(GAP, GRACE)
        for event_id, at in order:
            book.place("c1", event_id, at)
        names.add(tuple((s.session_id, s.started_at, s.ended_at) for s in book.open))
    assert names == {
        (
            (session_id_for("c1", "e1"), 0, 45 * MIN),
            (session_id_for("c1", "e4"), 2 * GAP + 50 * MIN, 2 * GAP + 50 * MIN),
        )
    }


def test_session_id_is_a_stable_short_hash_of_customer_and_first_event():
    assert session_id_for("c1", "e1") == session_id_for("c1", "e1")
    assert len(session_id_for("c1", "e1")) == 16
    assert session_id_for("c1", "e1") != session_id_for("c2", "e1")
