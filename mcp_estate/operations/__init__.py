"""What `estate` does to or reads from a cloud account: bootstrap, lock, verify. Importable
functions that raise typed errors; the CLI prints them."""
