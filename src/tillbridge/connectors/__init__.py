"""Connectors: every way money moves, in two families, and the registry that builds them.

* :mod:`.terminals`: card-present (a lease per terminal link, events, input, end of day);
  protocol packages such as :mod:`.terminals.zvt`;
* :mod:`.gateways`: online (providers and the ``fake`` sandbox);
* :mod:`.registry`: config ``type`` -> model and factory.

The contract every connector implements is :mod:`tillbridge.payments.contract`.
"""
