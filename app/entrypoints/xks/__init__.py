"""The XKS Proxy API v1 KeyLedger serves (docs/key-custody.md#external-key-stores-xks)."""
