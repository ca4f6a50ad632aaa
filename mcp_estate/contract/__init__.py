"""The contract every layer may import: the spec and its validation, the stack file, geography,
physical names and tags, IAM documents and exit codes. Kept light: `names` and `exit_codes` use only the
standard library, so the canary runtime can import them."""
