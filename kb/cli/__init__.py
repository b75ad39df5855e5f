"""The `kb` command, one module per verb group."""
