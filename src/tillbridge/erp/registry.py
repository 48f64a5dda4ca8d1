"""The ERP registry: each ``[erp.NAME]`` ``type`` maps to its model and what it contributes.

An ERP type contributes, in two phases because payments and ERPs depend on each other:

1. :attr:`ErpType.listeners`: payment listeners (write-back jobs enqueued in the transaction of
   a state change), known before the payment engine is built;
2. :attr:`ErpType.build`: given the engine, its webhook sources (verifier, per-account secrets,
   processor), job kinds and what to close at shutdown.

Both receive every entry of the type at once (several Xentral accounts share one webhook source
and one write-back job). A type not registered in :data:`ERP_TYPES` is a configuration error.
"""

from __future__ import annotations

from typing import Final

from tillbridge.erp.parts import ErpType
from tillbridge.erp.xentral.entry import XENTRAL_TYPE

#: Every ERP type this build implements.
ERP_TYPES: Final[tuple[ErpType, ...]] = (XENTRAL_TYPE,)
