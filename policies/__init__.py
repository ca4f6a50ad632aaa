"""mcp-estate's CrossGuard policy pack: the controls, and what they protect against."""
