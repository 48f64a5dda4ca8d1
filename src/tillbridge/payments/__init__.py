"""The one payment engine and the connector contract.

* :mod:`.contract`: what every connector implements, and its capability predicates;
* :mod:`.engine`: create, execute, apply, cancel, refund, resolve;
* :mod:`.recovery`: unknown outcomes, asked about and never resent;
* :mod:`.families`: what differs between card-present and online connectors, as data;
* :mod:`.jobs`: the job kinds, keys and payloads.
"""
