"""The online connector family: providers and sandboxes reached over the network.

Each provider is a package here (client, mapping, notifications, connector) plus one entry in
:mod:`tillbridge.connectors.registry`. ``fake`` is the built-in sandbox.
"""
