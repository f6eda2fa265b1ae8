"""A Pyro handler that counts the ``param`` statements a program makes, by name: what a trace and SVI's param
capture see of a model's registrations (shared by the tests of :mod:`hybridpgm.module_registration` and of the
families that register their networks once per call)."""

import collections

from pyro.poutine.messenger import Messenger


class ParamMessages(Messenger):
    """Counts the ``param`` messages by name in :attr:`names`."""

    def __init__(self):
        super().__init__()
        self.names = collections.Counter()

    def _pyro_param(self, msg):
        self.names[msg["name"]] += 1
