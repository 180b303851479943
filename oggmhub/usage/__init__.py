"""Usage records and budgets: who used what (servers, Dask, tool tasks, GPUs), per user,
cohort and project (issue #25). Hub side; see docs/usage.md."""
