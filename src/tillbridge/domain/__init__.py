"""The payment domain: pure code, no I/O. Payments, operations, refunds and their state machine."""
