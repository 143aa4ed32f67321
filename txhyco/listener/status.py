"""A listener's status: what its control channel is doing, told to whoever asked to hear it."""
from __future__ import annotations

from enum import Enum

from twisted.logger import Logger

log = Logger()


class ListenerStatus(str, Enum):
    """What a listener's control channel is doing.

    Each member is also its plain string (``ListenerStatus.ONLINE ==
    "online"``), hashes and prints as that string, so status panels, logs and
    code that compare with the strings see no difference.
    """

    CONNECTING = "connecting"
    ONLINE = "online"
    OFFLINE = "offline"

    __str__ = str.__str__
    __format__ = str.__format__
    __hash__ = str.__hash__


CONNECTING, ONLINE, OFFLINE = ListenerStatus.CONNECTING, ListenerStatus.ONLINE, ListenerStatus.OFFLINE


class StatusReport:
    """A listener's status and last error; observers hear of each change once."""

    def __init__(self) -> None:
        self.status = OFFLINE
        self.last_error: Exception | None = None
        self._observers: list = []

    def add_observer(self, observer) -> None:
        self._observers.append(observer)

    def remove_observer(self, observer) -> None:
        self._observers.remove(observer)

    def set(self, status: ListenerStatus, error: Exception | None = None) -> None:
        if status is self.status and error is None:
            return  # not a change (stopping reports OFFLINE from two places)
        if error is not None:
            self.last_error = error
        self.status = status
        for observer in list(self._observers):
            try:
                observer(status, self.last_error)
            except Exception:
                log.failure("status observer failed")
