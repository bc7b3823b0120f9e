"""`pyro-vae figures`."""

SUBCOMMANDS = {}
