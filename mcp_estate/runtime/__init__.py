"""Code that runs outside the program: the MCP probe and the canary Lambda. Standard library, boto3
and `mcp_estate.contract.names` only (tests/test_layers.py holds it to that)."""
