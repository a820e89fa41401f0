"""Private helpers shared by rayapp's stages. Not a public API."""
