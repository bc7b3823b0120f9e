"""`pyro-vae explore`."""

SUBCOMMANDS = {}
