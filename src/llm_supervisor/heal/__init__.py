"""Self-healing beyond the weights: one module per failure kind, each a pure diagnosis (what the
log, the exit and the machine say) and the repair's decision (what to run next, or the one
sentence that tells the user what to change). The hook layer is
:mod:`llm_supervisor.plugins.builtin.heal`; what each heal did lives in :mod:`.ledger`."""
