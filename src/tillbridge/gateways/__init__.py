"""Payment connectors reached through the payments API: the contract, the registry, the fake."""
