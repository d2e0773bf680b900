"""LedgerFuture: a concurrent.futures.Future that is cheap to create by the thousand.

A plain Future builds a threading.Condition (an RLock, a deque, bound methods) and two lists in
__init__; for a ledger that resolves tens of thousands of futures per second, mostly never
waited on, that is most of the cost of submit() (and a lot of garbage-collector work when the
caller keeps them). Here those attributes are made on first use, under one module lock, by the
real Future.__init__ (so whatever a Python version puts there is there). The writer completes
a future with _resolve(): when nobody has touched it yet (no waiter, no callback, no done()
call) it records the outcome under the same lock — anyone arriving later builds the condition
under that lock and then sees FINISHED; otherwise it is the ordinary set_result/set_exception.
It is a real concurrent.futures.Future subclass: result(), add_done_callback(),
concurrent.futures.wait() and asyncio.wrap_future() work unchanged.
"""
import threading
from concurrent.futures import Future, InvalidStateError
from concurrent.futures._base import FINISHED, PENDING

from becomingone.ledger.entry import Entry

_LAZY = threading.Lock()


class LedgerFuture(Future):
    # class defaults until set on the instance: the Ledger makes its futures with
    # object.__new__(LedgerFuture) (no __init__ call at all)
    _state = PENDING
    _result = None
    _exception = None
    _made = False                       # Future.__init__'s condition and lists exist

    def __init__(self):  # noqa: the rest of Future.__init__ runs on first use (__getattr__)
        pass

    def result(self, timeout=None):
        """Future.result(); the Ledger's writer resolves with a plain tuple (index, ts,
        data_json, previous hash hex, hash hex) that becomes an Entry here, once."""
        r = Future.result(self, timeout)
        if type(r) is tuple:
            with _LAZY:                 # one Entry, whichever thread asks first
                r = self._result
                if type(r) is tuple:
                    r = self._result = Entry(*r)
        return r

    def __getattr__(self, name):
        """Only called for attributes not yet made: make all of Future.__init__'s at once."""
        if name.startswith("__") or name == "_made":
            raise AttributeError(name)
        with _LAZY:
            if not self._made:
                state, result, exc = self._state, self._result, self._exception
                Future.__init__(self)
                self._state, self._result, self._exception = state, result, exc
                self._made = True
        return object.__getattribute__(self, name)

    def _resolve(self, result, exc):
        """Complete the future (writer thread): result, or exception `exc` when not None."""
        with _LAZY:
            if not self._made:          # nobody has looked: no waiter or callback to wake
                if exc is None:
                    self._result = result
                else:
                    self._exception = exc
                self._state = FINISHED
                return
        if exc is None:
            self.set_result(result)
        else:
            self.set_exception(exc)


def resolve_all(futures, results, exc):
    """_resolve() for many futures (the writer, after a commit) under ONE acquisition of the
    module lock for all those nobody has touched; the others are completed after it."""
    touched = []
    with _LAZY:
        for f, r in zip(futures, results):
            if f._made:
                touched.append((f, r))
            elif exc is None:
                f._result = r
                f._state = FINISHED
            else:
                f._exception = exc
                f._state = FINISHED
    for f, r in touched:
        try:
            if exc is None:
                f.set_result(r)
            else:
                f.set_exception(exc)
        except InvalidStateError:  # the caller cancelled it; the entry is committed anyway
            pass
