"""The card-present connector family: terminals on the shop floor.

* :mod:`.family`: the card-present runtime the engine uses (leases, queueing, recovery
  evidence, the decision-point hook, events, abort);
* :mod:`.service`: status, end of day, input and events for the API and the CLI;
* :mod:`.sessions`, :mod:`.events`, :mod:`.store`, :mod:`.tables`: its parts;
* protocols: :mod:`.zvt` (ZVT-700 over TCP and serial) and :mod:`.sandbox` (``fake``).
"""
