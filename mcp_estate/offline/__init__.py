"""The offline runner: the program under Pulumi mocks, the fidelity checks of every input against
the providers' schemas and AWS's, and the plan (`estate plan`)."""
