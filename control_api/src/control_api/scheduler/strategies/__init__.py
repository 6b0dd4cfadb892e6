"""Built-in strategies: `baseline` (upstream's behaviour, the default) and `fill`."""
