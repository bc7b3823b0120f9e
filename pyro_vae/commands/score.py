"""`pyro-vae score`."""

SUBCOMMANDS = {}
