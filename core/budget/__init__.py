"""Cost control: token estimates, prices, the usage ledger with budgets, model routing."""
