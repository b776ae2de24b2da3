"""The bookkeeping: per-request records, cost and energy, the ledger, metrics, report, dashboard."""
