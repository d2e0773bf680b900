"""One module per `becomingone` command (cli.py imports them lazily, by name); common.py holds
what several share."""
