"""The per-customer state machine, as the partition processor sees it.

:class:`pipeline.core.processor.PartitionProcessor` owns the partition clock, one
timer heap and the set of customers to persist; everything else belongs to one
customer's state machine, :class:`pipeline.core.customer.CustomerState`. This
module names what the processor needs of that machine, as bytewax names
``StatefulLogic`` (``on_item``, ``on_notify``, ``on_eof``, ``notify_at``,
``snapshot``, plus a builder that resumes from a snapshot): :class:`CustomerLogic`
for one customer's machine and :class:`CustomerLogicType` for the class that
makes one, new or from its stored state.

Why a named seam: the processor's contract (results depend only on the
partition's arrival order and the clock values passed in) holds for any machine
that keeps these promises, so a change inside the customer's logic cannot reach
the timer heap, the persistence or the gauges without changing this protocol;
and a test can drive the processor with a small machine of its own.

The protocol states types only: the compiled core does not list this module
(:data:`pipeline.core_loader.COMPILED_MODULES`), and nothing checks it at run time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pipeline.contract.event import InteractionEvent
    from pipeline.core.records import OutputRecord, SessionRecord
    from pipeline.core.rules import CoreRules


class CustomerLogic(Protocol):
    """One customer's state machine on one partition.

    Every method that may emit records appends them to ``out`` (in emit order)
    rather than returning a new list: the processor collects one list per input.
    """

    @property
    def customer_id(self) -> str: ...

    # The due time the processor's timer heap holds for this customer (None: not
    # registered). The processor owns it; the machine only keeps it (not state).
    wake: int | None

    @property
    def due_hint(self) -> int | None:
        """After :meth:`apply` of an event that was not a duplicate: the earliest due
        time the event created or moved earlier (None: nothing). All other due
        times can only have moved later."""
        ...

    def apply(self, event: InteractionEvent, clock_ms: int, out: list[OutputRecord]) -> str:
        """Apply one event at partition clock ``clock_ms`` (bytewax: ``on_item``).

        Returns ``applied``, ``duplicate`` (nothing changed) or ``late``
        (:data:`pipeline.core.customer.APPLIED` and its siblings)."""
        ...

    def identified(self, contact_id: str, at: int, out: list[OutputRecord]) -> None:
        """The next event, of the contact, comes from identity through a link that
        starts at ``at`` (issue 16); called before it is applied."""
        ...

    def identified_done(self) -> None:
        """The event :meth:`identified` announced was applied."""
        ...

    def next_due(self) -> int | None:
        """The earliest clock value at which timed work is due (bytewax: ``notify_at``)."""
        ...

    def fire_until(self, limit_ms: int, out: list[OutputRecord]) -> tuple[bool, int | None]:
        """Run all timed work due at or before ``limit_ms`` in due order (bytewax:
        ``on_notify``); returns whether anything ran and the next due time."""
        ...

    @property
    def has_open_work(self) -> bool:
        """Whether :meth:`finish` would act (open sessions or unsettled candidates)."""
        ...

    def finish(self, out: list[OutputRecord]) -> None:
        """End of input: settle what can be settled and close everything (bytewax: ``on_eof``)."""
        ...

    def pending_updates(self) -> list[SessionRecord]:
        """``open`` records of the sessions changed since the last call."""
        ...

    @property
    def has_pending(self) -> bool:
        """Whether :meth:`pending_updates` would return anything."""
        ...

    @property
    def is_empty(self) -> bool:
        """Nothing open, running or remembered: the processor may forget the customer."""
        ...

    @property
    def open_session_count(self) -> int:
        """Open sessions (a gauge)."""
        ...

    def running_sla_clocks(self) -> list[tuple[str, int]]:
        """(channel, clock start) of every running SLA clock (gauges)."""
        ...

    def to_state(self) -> dict[str, Any]:
        """A JSON-able snapshot that :meth:`CustomerLogicType.from_state` restores
        (bytewax: ``snapshot``)."""
        ...


class CustomerLogicType(Protocol):
    """What makes a :class:`CustomerLogic`: a new one, or one from its stored state
    (bytewax: the builder given the resume state)."""

    def __call__(self, customer_id: str, rules: CoreRules) -> CustomerLogic: ...

    def from_state(
        self, customer_id: str, state: dict[str, Any], rules: CoreRules
    ) -> CustomerLogic: ...
