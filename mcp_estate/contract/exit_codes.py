"""The exit codes of every `estate` command, declared once: part of the interface (CI reads them)."""

OK = 0          # done; nothing found
FINDINGS = 1    # the command ran and found something: violations, findings, a failed probe
BAD_INPUT = 2   # it could not run: invalid stack file or arguments, unreadable account, missing resource
