"""Run MCP servers as a multi-region estate on AWS behind Cloudflare (README: Map of the code)."""
